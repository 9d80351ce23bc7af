"""Diversity measures against brute force and the reference vendi-score package."""

import numpy as np
import pytest

from synthllm.analysis.diversity import (
    distinct_n, mean_pairwise_cosine, similarity_histogram, vendi_score, within_group_similarities)


def _unit_rows(rows: int, dim: int, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).normal(size=(rows, dim))
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_vendi_matches_reference_package_on_2000_embeddings():
    vendi = pytest.importorskip("vendi_score.vendi")
    # Correlated embeddings, so the score is far from both 1 and d.
    rng = np.random.default_rng(7)
    embeddings = rng.normal(size=(2000, 384)) @ rng.normal(size=(384, 384)) * 0.1 + rng.normal(size=384)
    ours = vendi_score(embeddings.astype(np.float32))
    reference_kernel = vendi.score_X(embeddings)  # n×n kernel form
    reference_dual = vendi.score_dual(embeddings)
    assert 1.5 < ours < 384
    assert ours == pytest.approx(reference_kernel, rel=1e-6)
    assert ours == pytest.approx(reference_dual, rel=1e-6)


def test_vendi_of_identical_and_orthogonal_rows():
    assert vendi_score(np.tile([[1.0, 2.0, 0.5]], (50, 1))) == pytest.approx(1.0)
    assert vendi_score(np.eye(6)) == pytest.approx(6.0)


def test_mean_pairwise_cosine_equals_brute_force():
    unit = _unit_rows(300, 16, seed=1) + 0.3
    normalised = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    similarities = normalised @ normalised.T
    brute = similarities[~np.eye(300, dtype=bool)].mean()
    assert mean_pairwise_cosine(unit) == pytest.approx(brute, rel=1e-9)


def test_within_group_similarities_only_pairs_inside_groups():
    unit = _unit_rows(7, 5, seed=2)
    groups = ["a", "a", "a", "b", "b", "c", "d"]
    values = within_group_similarities(unit, groups)
    expected = [unit[0] @ unit[1], unit[0] @ unit[2], unit[1] @ unit[2], unit[3] @ unit[4]]
    assert sorted(values) == pytest.approx(sorted(expected))


def test_within_group_similarities_caps_group_size():
    unit = _unit_rows(80, 5, seed=3)
    values = within_group_similarities(unit, ["doc"] * 80, max_per_group=10)
    assert values.size == 45


def test_similarity_histogram_counts_every_pair():
    summary = similarity_histogram(np.array([-0.9, 0.1, 0.5, 0.5, 1.0]))
    assert sum(summary["counts"]) == 5
    assert summary["counts"][0] == 1  # -0.9 is clipped into the first bin
    assert summary["median"] == pytest.approx(0.5)


def test_distinct_n():
    texts = ["the cat sat", "the cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(["one"], 2) != distinct_n(["one"], 2)  # NaN: no bigrams
