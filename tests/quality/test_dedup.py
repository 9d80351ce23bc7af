"""Exact and near-duplicate removal keeps the first occurrence and says what each removal duplicates."""

from __future__ import annotations

import pickle
import re

import pytest

import numpy as np

from synthllm.io import read_jsonl
from synthllm.quality import char_shingles, deduplicate, lsh_bands, lsh_params, text_signatures

BASE = ("A farmer has 12 cows and buys 7 more at the market on Monday. Each cow gives 9 litres of milk "
        "per day. How many litres of milk does the farmer collect in one week?")
OTHER = "Find all real solutions of the equation x^2 - 5x + 6 = 0 and explain why there are no others."


def test_exact_duplicate_after_normalisation_points_to_first():
    records = [{"id": "a", "question": BASE}, {"id": "b", "question": "  " + BASE.upper().replace(",", "") + "!"},
               {"id": "c", "question": OTHER}]
    kept, removed = deduplicate(records)
    assert [r["id"] for r in kept] == ["a", "c"]
    assert removed == [{"id": "b", "duplicate_of": "a", "similarity": 1.0, "kind": "exact",
                        "text": records[1]["question"]}]


def test_near_duplicate_records_similarity_and_first_occurrence():
    edited = BASE.replace("How many litres", "In total, how many litres")
    records = [{"id": "first", "question": BASE}, {"id": "other", "question": OTHER},
               {"id": "second", "question": edited}]
    kept, removed = deduplicate(records, threshold=0.7)
    assert [r["id"] for r in kept] == ["first", "other"]
    assert len(removed) == 1
    entry = removed[0]
    assert entry["id"] == "second" and entry["duplicate_of"] == "first" and entry["kind"] == "near"
    shingles_a, shingles_b = char_shingles([BASE, edited], 5)
    shared = len(set(shingles_a.tolist()) & set(shingles_b.tolist()))
    assert entry["similarity"] == pytest.approx(shared / (len(shingles_a) + len(shingles_b) - shared), abs=1e-4)


def test_order_decides_which_copy_survives():
    edited = BASE.replace("Monday", "Tuesday")
    forward, _ = deduplicate([{"id": 1, "question": BASE}, {"id": 2, "question": edited}], threshold=0.6)
    backward, removed = deduplicate([{"id": 2, "question": edited}, {"id": 1, "question": BASE}], threshold=0.6)
    assert [r["id"] for r in forward] == [1]
    assert [r["id"] for r in backward] == [2] and removed[0]["duplicate_of"] == 2


def test_threshold_separates_near_from_distinct():
    edited = BASE.replace("cows", "goats").replace("cow gives", "goat yields").replace("milk", "cheese")
    records = [{"id": 1, "question": BASE}, {"id": 2, "question": edited}]
    strict_kept, _ = deduplicate(records, threshold=0.95)
    loose_kept, loose_removed = deduplicate(records, threshold=0.3)
    assert len(strict_kept) == 2
    assert len(loose_kept) == 1 and loose_removed[0]["kind"] == "near"


def test_copy_of_a_removed_record_points_to_the_kept_one():
    edited = BASE.replace("How many litres", "In total, how many litres")
    records = [{"id": "k", "question": BASE}, {"id": "r", "question": edited}, {"id": "r2", "question": edited}]
    kept, removed = deduplicate(records, threshold=0.7)
    assert [r["id"] for r in kept] == ["k"]
    assert {r["id"]: r["duplicate_of"] for r in removed} == {"r": "k", "r2": "k"}


def test_short_and_empty_texts_and_missing_fields():
    kept, removed = deduplicate([{"id": 1, "question": "What is 2+2?"}, {"id": 2, "question": "what is 2 + 2"},
                                 {"id": 3, "question": ""}, {"id": 4, "question": ""}])
    assert [r["id"] for r in kept] == [1, 3]
    assert [(r["id"], r["duplicate_of"]) for r in removed] == [(2, 1), (4, 3)]
    with pytest.raises(KeyError, match="no 'question'"):
        deduplicate([{"id": 1, "text": "x"}])


def test_many_records_with_planted_copies():
    rng = np.random.default_rng(0)
    words = ["apple", "river", "engine", "garden", "violin", "planet", "silver", "ladder", "orange", "castle",
             "pencil", "forest", "window", "rocket", "meadow", "button", "candle", "mirror", "tunnel", "bridge"]
    questions = [" ".join(rng.choice(words, 14)) + f" for case {i}?" for i in range(300)]
    records = [{"id": i, "question": q} for i, q in enumerate(questions)]
    records += [{"id": 1000 + i, "question": questions[i] + " Show your work."} for i in range(0, 300, 30)]
    kept, removed = deduplicate(records, threshold=0.7)
    assert len(kept) == 300
    assert sorted((r["id"], r["duplicate_of"]) for r in removed) == [(1000 + i, i) for i in range(0, 300, 30)]


def test_lsh_params_follow_the_threshold():
    # the old divisor-only choice kept 16 bands x 8 rows at both 0.7 and 0.8
    assert lsh_params(0.7, 128) == (20, 6)
    assert lsh_params(0.8, 128) == (14, 9)
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = lsh_params(threshold, 128)
        assert bands * rows <= 128 and lsh_bands(threshold, 128) == bands
        # a pair exactly at the threshold becomes a candidate with probability >= 0.8
        assert 1 - (1 - threshold**rows) ** bands >= 0.8
    assert lsh_bands(0.9, 128) < lsh_bands(0.5, 128)


def _gsm8k_questions(shared_data, count):
    return [row["question"] for row in read_jsonl(shared_data / "gsm8k" / "train.jsonl")[:count]]


@pytest.mark.parametrize("edit", ["number", "word", "lower"])
def test_light_edits_of_real_questions_are_caught(shared_data, edit):
    """One changed number, one replaced word, or lower case without punctuation: each copy is found."""
    questions = _gsm8k_questions(shared_data, 12)
    edited = []
    for question in questions:
        if edit == "number":
            match = re.search(r"\d+", question)
            edited.append(question[:match.start()] + str(int(match.group()) + 7) + question[match.end():])
        elif edit == "word":
            match = list(re.finditer(r"[A-Za-z]{4,}", question))[2]
            edited.append(question[:match.start()] + "zebra" + question[match.end():])
        else:
            edited.append(re.sub(r"[^\w\s]", "", question.lower()))
    records = [{"id": f"o{i}", "question": q} for i, q in enumerate(questions)]
    records += [{"id": f"c{i}", "question": q} for i, q in enumerate(edited)]
    kept, removed = deduplicate(records)
    assert [r["id"] for r in kept] == [f"o{i}" for i in range(len(questions))]
    assert sorted((r["id"], r["duplicate_of"]) for r in removed) == sorted(
        (f"c{i}", f"o{i}") for i in range(len(questions)))


def test_distinct_real_questions_are_kept(shared_data):
    questions = _gsm8k_questions(shared_data, 300)
    kept, removed = deduplicate([{"id": i, "question": q} for i, q in enumerate(questions)])
    assert removed == [] and len(kept) == 300


def test_signatures_are_picklable_and_shard_independent():
    texts = [BASE, OTHER, BASE.lower()]
    whole = text_signatures(texts)
    parts = text_signatures(texts[:1]) + text_signatures(texts[1:])
    for a, b in zip(whole, parts):
        assert a.digest == b.digest and np.array_equal(a.shingles, b.shingles) and np.array_equal(a.minhash, b.minhash)
    restored = pickle.loads(pickle.dumps(whole))
    assert np.array_equal(restored[1].minhash, whole[1].minhash)


def test_semantic_pass_removes_paraphrases_only_when_asked():
    records = [{"id": 1, "question": BASE}, {"id": 2, "question": OTHER}, {"id": 3, "question": "Unrelated text"}]
    rng = np.random.default_rng(1)
    base = rng.standard_normal((3, 64)).astype(np.float32)
    embeddings = np.vstack([base, base[0] + 0.05 * rng.standard_normal(64)])
    records.append({"id": 4, "question": "A farmer owns a dozen cows and buys seven more; each gives 9 l a day."})
    kept, removed = deduplicate(records)
    assert len(kept) == 4
    kept, removed = deduplicate(records, embeddings=embeddings, semantic_threshold=0.95)
    assert [r["id"] for r in kept] == [1, 2, 3]
    assert removed[0]["id"] == 4 and removed[0]["duplicate_of"] == 1 and removed[0]["kind"] == "semantic"
    assert removed[0]["similarity"] >= 0.95


def test_semantic_pass_on_minilm_finds_a_reworded_question(shared_data):
    """Real MiniLM embeddings: a reworded GSM8K question is removed at cosine 0.9, other questions stay."""
    from synthllm.embeddings import embed_texts

    questions = _gsm8k_questions(shared_data, 6)
    reworded = ("Natalia sold clips to 48 of her friends in April, and in May she sold half as many clips. "
                "How many clips did she sell altogether in April and May?")
    records = [{"id": i, "question": q} for i, q in enumerate(questions)] + [{"id": "r", "question": reworded}]
    embeddings = embed_texts([r["question"] for r in records])
    lexical_kept, _ = deduplicate(records, threshold=0.95)
    assert len(lexical_kept) == 7  # the wording differs too much for the 0.95 character rule
    kept, removed = deduplicate(records, threshold=0.95, embeddings=embeddings, semantic_threshold=0.9)
    assert [r["id"] for r in kept] == list(range(6))
    assert [(r["id"], r["duplicate_of"], r["kind"]) for r in removed] == [("r", 0, "semantic")]
