"""Classifier two-sample TV and MMD on real document embeddings."""

import numpy as np
import pytest

from testdata import GSM8K_TRAIN, MATH_DOCS, NONMATH_DOCS, read_jsonl
from synthllm.analysis.divergence import classifier_tv, curation_tv, mmd_rbf


@pytest.fixture(scope="module")
def embedded_corpora():
    """MiniLM embeddings of 45 textbook math sections, the 45 non-math sections
    and 300 GSM8K training questions."""
    if not (MATH_DOCS.is_file() and NONMATH_DOCS.is_file() and GSM8K_TRAIN.is_file()):
        pytest.skip("shared data missing")
    from synthllm.embeddings import embed_texts

    # The first 800 characters: enough to tell the subject, and cheap to embed.
    math_texts = [d["text"][:800] for d in read_jsonl(MATH_DOCS, 45)]
    nonmath_texts = [d["text"][:800] for d in read_jsonl(NONMATH_DOCS)]
    questions = [p["question"] for p in read_jsonl(GSM8K_TRAIN, 300)]
    return embed_texts(math_texts), embed_texts(nonmath_texts), embed_texts(questions)


def _halves(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(vectors))
    return vectors[order[: len(order) // 2]], vectors[order[len(order) // 2:]]


def test_tv_near_zero_for_two_halves_of_the_same_data(embedded_corpora):
    first, second = _halves(embedded_corpora[2], seed=0)
    result = classifier_tv(first, second)
    assert result["n_per_side"] == 150
    assert result["tv"] < 0.1
    assert result["tv_low"] == 0.0


def test_tv_near_one_for_math_vs_nonmath(embedded_corpora):
    math_vectors, nonmath_vectors, _ = embedded_corpora
    result = classifier_tv(math_vectors, nonmath_vectors)
    assert result["n_per_side"] == 45
    assert result["tv"] > 0.85
    assert result["tv_high"] <= 1.0


def test_mmd_separates_math_from_nonmath_but_not_halves(embedded_corpora):
    math_vectors, nonmath_vectors, questions = embedded_corpora
    same = mmd_rbf(*_halves(questions, seed=1), permutations=100)
    different = mmd_rbf(math_vectors, nonmath_vectors, permutations=100)
    assert different["mmd2"] > 10 * abs(same["mmd2"])
    assert different["p_value"] < 0.02
    assert same["p_value"] > 0.01


def test_curation_tv_scales_by_removed_share():
    rng = np.random.default_rng(0)
    kept = rng.normal(size=(300, 8))
    removed = rng.normal(loc=3.0, size=(100, 8))
    result = curation_tv(removed, kept)
    assert result["removed_share"] == pytest.approx(0.25)
    assert result["removed_vs_kept"]["tv"] > 0.9
    assert result["tv"] == pytest.approx(0.25 * result["removed_vs_kept"]["tv"])
