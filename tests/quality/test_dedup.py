"""Exact and near-duplicate removal keeps the first occurrence and says what each removal duplicates."""

from __future__ import annotations

import pytest

from synthllm.quality import deduplicate, lsh_bands, normalise_text, word_shingles

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
    shingles_a, shingles_b = (word_shingles(normalise_text(t), 5) for t in (BASE, edited))
    assert entry["similarity"] == pytest.approx(len(shingles_a & shingles_b) / len(shingles_a | shingles_b), abs=1e-4)


def test_order_decides_which_copy_survives():
    edited = BASE.replace("Monday", "Tuesday")
    forward, _ = deduplicate([{"id": 1, "question": BASE}, {"id": 2, "question": edited}], threshold=0.6)
    backward, removed = deduplicate([{"id": 2, "question": edited}, {"id": 1, "question": BASE}], threshold=0.6)
    assert [r["id"] for r in forward] == [1]
    assert [r["id"] for r in backward] == [2] and removed[0]["duplicate_of"] == 2


def test_threshold_separates_near_from_distinct():
    edited = BASE.replace("12 cows", "15 goats").replace("9 litres", "4 litres")
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
    questions = [f"Question number {i}: compute the sum of the first {i} odd numbers and the product of {i} "
                 f"and {i + 3}, then explain the pattern for case {i}." for i in range(300)]
    records = [{"id": i, "question": q} for i, q in enumerate(questions)]
    records += [{"id": 1000 + i, "question": questions[i] + " Show your work."} for i in range(0, 300, 30)]
    kept, removed = deduplicate(records, threshold=0.7)
    assert len(kept) == 300
    assert sorted((r["id"], r["duplicate_of"]) for r in removed) == [(1000 + i, i) for i in range(0, 300, 30)]


def test_lsh_bands_divides_num_perm_and_tracks_threshold():
    for threshold in (0.5, 0.8, 0.9):
        bands = lsh_bands(threshold, 128)
        assert 128 % bands == 0
    assert lsh_bands(0.9, 128) < lsh_bands(0.5, 128)
