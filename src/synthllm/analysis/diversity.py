"""Embedding and lexical diversity of a synthetic dataset.

All embedding measures take L2-normalised rows (what
:func:`synthllm.embeddings.embed_texts` returns), so a dot product is a cosine
similarity. Dataset-level measures avoid the n×n similarity matrix: the mean
pairwise cosine needs only the sum of the vectors, and the Vendi score with a
cosine kernel needs only the d×d matrix XᵀX/n, whose non-zero eigenvalues are
those of the n×n kernel matrix K/n.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Hashable, Sequence

import numpy as np
import scipy.linalg

# Bin edges for within-source cosine histograms: MiniLM cosines of related
# questions rarely fall below -0.2, so lower values go into the first bin.
SIMILARITY_EDGES = np.round(np.linspace(-0.2, 1.0, 49), 6)

_TOKEN = re.compile(r"\w+|[^\w\s]")


def _as_unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """Float64 copy of ``embeddings`` with every row scaled to unit length."""
    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def mean_pairwise_cosine(embeddings: np.ndarray) -> float:
    """Mean cosine similarity over all pairs i ≠ j, in O(n·d).

    For unit rows, ``Σ_i Σ_j x_i·x_j = ‖Σ_i x_i‖²``; removing the n diagonal
    terms and dividing by n(n−1) gives the mean over distinct pairs.

    Parameters
    ----------
    embeddings : ndarray of shape (n, d)
        Row vectors; they are normalised here.

    Returns
    -------
    float
        Mean pairwise cosine similarity (NaN when n < 2).
    """
    unit = _as_unit_rows(embeddings)
    n = unit.shape[0]
    if n < 2:
        return float("nan")
    total = unit.sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


def vendi_score(embeddings: np.ndarray, q: float = 1.0) -> float:
    """Vendi score with the cosine kernel, from the d×d covariance form.

    The Vendi score is ``exp`` of the order-q Rényi entropy of the eigenvalues
    of K/n, K = XXᵀ. The non-zero eigenvalues of XXᵀ/n equal those of XᵀX/n,
    so a d×d eigendecomposition suffices (cost O(n·d² + d³)), and the result
    equals the reference ``vendi_score.vendi.score_X`` (n×n kernel form).

    Parameters
    ----------
    embeddings : ndarray of shape (n, d)
        Row vectors; they are normalised here (cosine kernel).
    q : float, default=1.0
        Order of the entropy (1 = Shannon, ``inf`` = min-entropy).

    Returns
    -------
    float
        Effective number of distinct samples, between 1 and min(n, d).
    """
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.where(norms == 0, 1.0, norms)
    n = unit.shape[0]
    if n == 0:
        return float("nan")
    # The n·d² product runs in float32 (half the time; relative error ~1e-7 on
    # the score); the small d×d eigenproblem runs in float64.
    eigenvalues = scipy.linalg.eigvalsh((unit.T @ unit).astype(np.float64) / n)
    weights = eigenvalues[eigenvalues > 0]
    if q == 1:
        entropy = -(weights * np.log(weights)).sum()
    elif np.isinf(q):
        entropy = -np.log(weights.max())
    else:
        entropy = np.log((weights**q).sum()) / (1 - q)
    return float(np.exp(entropy))


def within_group_similarities(embeddings: np.ndarray, groups: Sequence[Hashable],
                              max_per_group: int = 50,
                              rng: np.random.Generator | None = None) -> np.ndarray:
    """Cosine similarities of all pairs of rows that share a group.

    SynthLLM's diversity histogram: the group is the source document, and the
    paper takes 50 questions per document.

    Parameters
    ----------
    embeddings : ndarray of shape (n, d)
        One row per question.
    groups : sequence of hashable, length n
        Group key of each row (e.g. the tuple of source document ids).
    max_per_group : int, default=50
        Larger groups are subsampled to this many rows.
    rng : numpy Generator, optional
        Randomness for the subsampling (seed 0 when omitted).

    Returns
    -------
    ndarray of shape (n_pairs,)
        Similarities of all within-group pairs, group after group.
    """
    if len(groups) != len(embeddings):
        raise ValueError(f"{len(groups)} group keys for {len(embeddings)} embeddings")
    rng = rng or np.random.default_rng(0)
    unit = _as_unit_rows(embeddings)
    members: dict[Hashable, list[int]] = defaultdict(list)
    for row, key in enumerate(groups):
        members[key].append(row)
    chunks = []
    for rows in members.values():
        if len(rows) < 2:
            continue
        if len(rows) > max_per_group:
            rows = rng.choice(rows, size=max_per_group, replace=False)
        block = unit[rows]
        upper = np.triu_indices(len(rows), k=1)
        chunks.append((block @ block.T)[upper])
    return np.concatenate(chunks) if chunks else np.zeros(0)


def similarity_histogram(similarities: np.ndarray, edges: np.ndarray = SIMILARITY_EDGES) -> dict:
    """Histogram and summary of pairwise similarities, ready for JSON.

    Parameters
    ----------
    similarities : ndarray of shape (n_pairs,)
        Cosine similarities.
    edges : ndarray, default=SIMILARITY_EDGES
        Bin edges; values outside are clipped into the first or last bin.

    Returns
    -------
    dict
        ``edges``, ``counts``, ``n_pairs``, ``mean``, ``median``.
    """
    values = np.clip(np.asarray(similarities, dtype=np.float64), edges[0], edges[-1])
    counts, _ = np.histogram(values, bins=edges)
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "n_pairs": int(values.size),
        "mean": float(values.mean()) if values.size else None,
        "median": float(np.median(values)) if values.size else None,
    }


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (the unit of distinct-n)."""
    return _TOKEN.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Share of distinct n-grams among all n-grams of ``texts`` (Li et al., 2016).

    Parameters
    ----------
    texts : sequence of str
        Texts to measure; n-grams never cross text boundaries.
    n : int
        N-gram length.

    Returns
    -------
    float
        Distinct n-grams / total n-grams, NaN when there are none.
    """
    total = 0
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        tokens = tokenize(text)
        grams = list(zip(*(tokens[i:] for i in range(n))))
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else float("nan")
