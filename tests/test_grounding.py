"""Grounding (SPEC §5) on a hand-made run folder, with the real MiniLM embedder."""

import pytest

from synthllm.analysis.grounding import grounding, mentions, quality_warnings
from synthllm.store import RunStore, empty_counts

pytest.importorskip("sentence_transformers")

DOCS = {
    "fractions": "Fractions. A fraction a/b names a parts of a whole cut into b equal parts. To add fractions "
                 "with unlike denominators, rewrite them over the least common denominator.",
    "triangles": "Right triangles. The Pythagorean theorem says that the legs a, b and the hypotenuse c of a "
                 "right triangle satisfy a^2 + b^2 = c^2.",
    "interest": "Simple interest. Interest I on a principal P at an annual rate r for t years is I = P r t.",
    "decimals": "Rounding decimals. To round a decimal to the nearest tenth, look at the hundredths digit.",
}


@pytest.fixture
def run(tmp_path):
    store = RunStore(tmp_path / "run")
    records = [{"id": k, "text": v} for k, v in DOCS.items()]
    store.commit_shard("documents", "part-00000", records, [], {**empty_counts(), "in": 4, "ok": 4, "out": 4})
    rows = [
        {"id": "a", "level": 1, "question": "Add 1/3 and 1/4 using the least common denominator.",
         "source_doc_ids": ["fractions"]},
        {"id": "b", "level": 1, "question": "A right triangle has legs 3 and 4. How long is its hypotenuse?",
         "source_doc_ids": ["triangles"]},
        # a copied prompt example: about a jacket on sale, not its document
        {"id": "c", "level": 1, "question": "A jacket costs $60 and is on sale for 25% off. What is the sale price?",
         "source_doc_ids": ["triangles"]},
        {"id": "d", "level": 2, "question": "What is the simple interest on $500 at a rate of 4% for 3 years?",
         "source_doc_ids": ["interest"]},
        {"id": "e", "level": 3, "question": "Use the Pythagorean theorem and simple interest to find x.",
         "source_doc_ids": ["triangles", "interest"],
         "walk": {"concepts": ["Pythagorean theorem", "Simple interest", "Rounding"]}},
        {"id": "f", "level": 3, "question": "What is 2 + 2?", "source_doc_ids": ["fractions"],
         "walk": {"concepts": ["Least common denominator", "Hypotenuse"]}},
    ]
    store.write_jsonl("dataset.jsonl", rows)
    return store.root


def test_grounding_ranks_sources_and_lists_the_worst(run):
    result = grounding(run, k=1)
    assert result["embedder"] == "all-MiniLM-L6-v2" and result["k"] == 1
    assert result["n_documents"] == 4 and result["chance"] == 0.25
    level1 = result["levels"]["1"]
    assert level1["n"] == 3 and level1["share"] == pytest.approx(2 / 3)
    assert level1["worst"][0]["id"] == "c" and level1["worst"][0]["rank"] > 1
    assert set(level1["worst"][0]) == {"id", "question", "source_doc_id", "rank"}
    assert result["levels"]["2"] == {"share": 1.0, "n": 1, "worst": [
        {"id": "d", "question": "What is the simple interest on $500 at a rate of 4% for 3 years?",
         "source_doc_id": "interest", "rank": 1}]}
    level3 = result["levels"]["3"]
    assert level3["share"] == 0.5 and level3["worst"][0]["id"] == "f" and level3["worst"][0]["mentioned"] == 0
    assert grounding(run, k=4)["levels"]["1"]["share"] == 1.0  # every source is in the top 4 of 4


def test_mentions_matches_names_and_their_words():
    assert mentions("Use the Pythagorean Theorem here", "Pythagorean theorem")
    assert mentions("the theorem of Pythagorean fame", "Pythagorean theorem")
    assert not mentions("a triangle", "Pythagorean theorem")


def test_quality_warnings_name_poor_parse_rates_and_grounding():
    stages = {"concepts": {"ok": 1, "unparsable": 19}, "level1": {"ok": 20, "unparsable": 0}}
    poor = {"k": 3, "n_documents": 20, "chance": 0.15,
            "levels": {"1": {"share": 0.35, "n": 17, "worst": []}, "3": {"share": 0.9, "n": 10, "worst": []}}}
    warnings = quality_warnings(stages, poor)
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert warnings[0].startswith("concepts: only 1 of 20") and warnings[1].startswith("level 1: only 35%")
    good = {**poor, "levels": {"1": {"share": 0.8, "n": 40, "worst": []}}}
    assert quality_warnings({"level1": {"ok": 20, "unparsable": 1}}, good) == []
    assert quality_warnings({}, None) == []


def test_grounding_of_a_real_run_reads_dataset_rows_of_every_level(scripted_run):
    """Dataset rows carry the walk as a list of nodes (the demo crashed on it): Level-3 uses the row's concepts."""
    from synthllm.analysis.grounding import grounding

    result = grounding(scripted_run)
    assert set(result["levels"]) == {"1", "2", "3"}
    assert 0.0 <= result["levels"]["3"]["share"] <= 1.0 and result["levels"]["3"]["n"] > 0
