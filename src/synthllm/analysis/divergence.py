"""Two-sample estimates of the distance between two sets of embeddings.

These estimate the total-variation terms of Gan & Liu's Theorem 4.7:
``D_TV(D, D_M)`` (anchor vs raw generations) and ``D_TV(D_M, D_gen)`` (raw vs
curated generations).

Classifier two-sample test: with equal class sizes, the Bayes accuracy of
telling P from Q is ``(1 + TV(P, Q)) / 2``, so a classifier's held-out accuracy
gives the lower-bound estimate ``TV ≈ 2·acc − 1`` (clipped at 0; the embedding
and the classifier can only lose information). MMD with an RBF kernel is a
second, classifier-free opinion.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist, pdist
from scipy.stats import binomtest


def _balanced(first: np.ndarray, second: np.ndarray, max_per_side: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Subsample both sets to the same size (at most ``max_per_side``)."""
    size = min(len(first), len(second), max_per_side)
    pick = lambda rows: rows[rng.choice(len(rows), size=size, replace=False)]  # noqa: E731
    return pick(np.asarray(first, dtype=np.float64)), pick(np.asarray(second, dtype=np.float64))


def classifier_tv(first: np.ndarray, second: np.ndarray, *, folds: int = 5,
                  max_per_side: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Total-variation estimate from a cross-validated logistic-regression two-sample test.

    Parameters
    ----------
    first, second : ndarray of shape (n1, d) and (n2, d)
        Embeddings of the two samples.
    folds : int, default=5
        Stratified cross-validation folds; every row is predicted once, by a
        model that did not see it.
    max_per_side : int, default=2000
        Both sets are subsampled to ``min(n1, n2, max_per_side)`` rows so the
        classes are balanced (chance accuracy 0.5).
    confidence : float, default=0.95
        Level of the Wilson binomial interval on the accuracy, mapped to TV.
    seed : int, default=0
        Seed for subsampling and fold assignment.

    Returns
    -------
    dict
        ``tv``, ``tv_low``, ``tv_high``, ``accuracy``, ``n_per_side``, ``method``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    a, b = _balanced(first, second, max_per_side, rng)
    size = len(a)
    if size < folds:
        raise ValueError(f"need at least {folds} rows per side for {folds}-fold CV, got {size}")
    features = np.vstack([a, b])
    labels = np.repeat([0, 1], size)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, features, labels, cv=splitter)
    correct = int((predicted == labels).sum())
    interval = binomtest(correct, 2 * size).proportion_ci(confidence_level=confidence, method="wilson")
    to_tv = lambda accuracy: max(0.0, 2.0 * accuracy - 1.0)  # noqa: E731
    accuracy = correct / (2 * size)
    return {
        "tv": to_tv(accuracy),
        "tv_low": to_tv(interval.low),
        "tv_high": to_tv(interval.high),
        "accuracy": accuracy,
        "n_per_side": size,
        "method": f"logistic regression, {folds}-fold CV, TV = max(0, 2*acc-1), "
                  f"{confidence:.0%} Wilson interval",
    }


def mmd_rbf(first: np.ndarray, second: np.ndarray, *, max_per_side: int = 1000,
            permutations: int = 200, seed: int = 0) -> dict:
    """Unbiased squared MMD with an RBF kernel (median heuristic) and a permutation p-value.

    Parameters
    ----------
    first, second : ndarray of shape (n1, d) and (n2, d)
        Embeddings of the two samples.
    max_per_side : int, default=1000
        Both sets are subsampled to at most this many rows (the kernel matrix
        is (2n)×(2n)).
    permutations : int, default=200
        Label permutations for the p-value (0 to skip).
    seed : int, default=0
        Seed for subsampling and permutations.

    Returns
    -------
    dict
        ``mmd2`` (unbiased MMD²), ``bandwidth`` (σ of exp(−‖x−y‖²/2σ²)),
        ``p_value``, ``n_per_side``.
    """
    rng = np.random.default_rng(seed)
    a, b = _balanced(first, second, max_per_side, rng)
    size = len(a)
    if size < 2:
        raise ValueError(f"need at least 2 rows per side, got {size}")
    pooled = np.vstack([a, b])
    # Median heuristic: σ² = median of pairwise squared distances / 2.
    bandwidth = float(np.sqrt(np.median(pdist(pooled, "sqeuclidean")) / 2.0)) or 1.0
    kernel = np.exp(-cdist(pooled, pooled, "sqeuclidean") / (2.0 * bandwidth**2))
    np.fill_diagonal(kernel, 0.0)

    def statistic(in_first: np.ndarray) -> float:
        in_second = ~in_first
        within_first = kernel[np.ix_(in_first, in_first)].sum() / (size * (size - 1))
        within_second = kernel[np.ix_(in_second, in_second)].sum() / (size * (size - 1))
        across = kernel[np.ix_(in_first, in_second)].mean()
        return float(within_first + within_second - 2.0 * across)

    membership = np.repeat([True, False], size)
    observed = statistic(membership)
    p_value = None
    if permutations:
        exceed = sum(statistic(rng.permutation(membership)) >= observed for _ in range(permutations))
        p_value = (exceed + 1) / (permutations + 1)
    return {"mmd2": observed, "bandwidth": bandwidth, "p_value": p_value, "n_per_side": size}


def curation_tv(removed: np.ndarray, kept: np.ndarray, *, removed_share: float | None = None,
                seed: int = 0, **options) -> dict:
    """TV between raw and curated data from a removed-vs-kept classifier test.

    Raw data is the mixture ``f·kept + (1−f)·removed`` with ``f`` the kept
    share, so ``TV(raw, curated) = (1−f)·TV(removed, kept)``. Testing removed
    vs kept avoids comparing a set with its own subset.

    Parameters
    ----------
    removed, kept : ndarray of shape (n_removed, d) and (n_kept, d)
        Embeddings of removed and kept samples.
    removed_share : float, optional
        Share 1−f of raw samples that curation removed; by default
        ``n_removed / (n_removed + n_kept)`` (right when the arrays hold all samples).
    seed : int, default=0
        Seed for :func:`classifier_tv`.
    **options
        Passed to :func:`classifier_tv`.

    Returns
    -------
    dict
        ``tv`` (raw vs curated), ``tv_low``, ``tv_high``, ``removed_share`` and
        ``removed_vs_kept`` (the classifier result).
    """
    share = len(removed) / (len(removed) + len(kept)) if removed_share is None else removed_share
    test = classifier_tv(removed, kept, seed=seed, **options)
    return {
        "tv": share * test["tv"],
        "tv_low": share * test["tv_low"],
        "tv_high": share * test["tv_high"],
        "removed_share": share,
        "removed_vs_kept": test,
    }
