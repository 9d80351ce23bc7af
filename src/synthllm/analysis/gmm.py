"""Gan & Liu's Gaussian-mixture experiment, with an exact-density KL estimator.

Setup (SPEC §3, following the paper's official code): a 2-D ground truth with
K+J equal-weight components (means ~ U[0,10]^d, covariances RRᵀ with
R ~ U[0,1]^{d×d}); anchor data = 50 samples from each of the first K
components; the generator is a mixture of the K anchor components (per-
component mean and covariance), the J unseen true components (relevant
information gain) and L random components (irrelevant noise); it emits 200
synthetic samples. A K-component GMM is fitted to the anchor and a
(K+J+L)-component GMM to the synthetic data, and

    KL gap = KL(anchor fit ‖ truth) − KL(synthetic fit ‖ truth).

A positive gap means the synthetic data brought the model closer to the truth.

Two estimators of each KL(P ‖ T), both from 1,000 fresh samples of P:

- ``histogram``: the paper's estimator, 50×50-bin histograms of samples of P
  and of T, ``Σ p log(p/q)`` over bins (we bin both samples on the same edges;
  the paper's code lets each sample choose its own range, which is noisier
  still);
- ``exact``: Monte Carlo with exact log-densities, ``mean log P(x) − log T(x)``
  for x ~ P (unbiased, since all three mixtures have closed-form densities).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import entropy

SWEEP_VALUES = tuple(range(2, 16))
REFERENCE_FACTOR = 20  # the reference gap uses this many times more samples than one estimate


class Mixture:
    """A Gaussian mixture given by its parameters, with exact sampling and log-density.

    Parameters
    ----------
    weights : ndarray of shape (m,)
        Component weights (sum to 1).
    means : ndarray of shape (m, d)
        Component means.
    covariances : ndarray of shape (m, d, d)
        Full component covariances (positive definite).
    """

    def __init__(self, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray):
        self.weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.means = np.asarray(means, dtype=np.float64)
        self.covariances = np.asarray(covariances, dtype=np.float64)
        # Cholesky factors once per mixture: sampling and densities are then batched.
        self._cholesky = np.linalg.cholesky(self.covariances)
        self._inverse_cholesky = np.linalg.inv(self._cholesky)
        dim = self.means.shape[1]
        log_det = 2.0 * np.log(np.diagonal(self._cholesky, axis1=1, axis2=2)).sum(axis=1)
        self._log_normaliser = np.log(self.weights) - 0.5 * (dim * np.log(2 * np.pi) + log_det)

    @classmethod
    def from_fitted(cls, fitted) -> "Mixture":
        """Parameters of a fitted ``sklearn.mixture.GaussianMixture`` (full covariances)."""
        return cls(fitted.weights_, fitted.means_, fitted.covariances_)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` points: a component per point, then a Gaussian draw from it."""
        components = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.standard_normal((n, self.means.shape[1]))
        return self.means[components] + np.einsum("nij,nj->ni", self._cholesky[components], noise)

    def log_density(self, points: np.ndarray) -> np.ndarray:
        """Exact log-density at each point (what ``GaussianMixture.score_samples`` returns)."""
        offsets = points[None, :, :] - self.means[:, None, :]
        whitened = offsets @ self._inverse_cholesky.transpose(0, 2, 1)
        per_component = self._log_normaliser[:, None] - 0.5 * np.square(whitened).sum(axis=2)
        top = per_component.max(axis=0)
        return top + np.log(np.exp(per_component - top).sum(axis=0))


def _random_covariances(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """``count`` covariances RRᵀ with R ~ U[0,1]^{d×d}, as in the paper."""
    factors = rng.random((count, dim, dim))
    return factors @ factors.transpose(0, 2, 1)


def kl_exact(p: Mixture, t: Mixture, n: int, rng: np.random.Generator) -> float:
    """Monte-Carlo KL(p ‖ t) with exact log-densities from ``n`` samples of p."""
    points = p.sample(n, rng)
    return float(np.mean(p.log_density(points) - t.log_density(points)))


def kl_histogram(p: Mixture, t: Mixture, n: int, rng: np.random.Generator, bins: int = 50) -> float:
    """The paper's histogram KL(p ‖ t) from ``n`` samples of each, on shared bin edges."""
    p_points, t_points = p.sample(n, rng), t.sample(n, rng)
    low = np.minimum(p_points.min(axis=0), t_points.min(axis=0))
    high = np.maximum(p_points.max(axis=0), t_points.max(axis=0))
    edges = [np.linspace(lo, hi, bins + 1) for lo, hi in zip(low, high)]
    p_density, _ = np.histogramdd(p_points, bins=edges, density=True)
    t_density, _ = np.histogramdd(t_points, bins=edges, density=True)
    # Same floor as the paper's code so that empty bins do not give infinities.
    return float(entropy(np.clip(p_density, 1e-10, None).ravel(), np.clip(t_density, 1e-10, None).ravel()))


def one_setup(K: int, J: int, L: int, rng: np.random.Generator, *, dim: int = 2,
              per_component: int = 50, n_synthetic: int = 200, n_eval: int = 1000,
              repeats: int = 5) -> dict:
    """Build one random truth, anchor, generator and fits; estimate the KL gap.

    Parameters
    ----------
    K, J, L : int
        Anchor, relevant-injected and irrelevant components.
    rng : numpy Generator
        All randomness of the setup and of the estimates.
    dim : int, default=2
        Dimension.
    per_component : int, default=50
        Anchor samples per anchor component.
    n_synthetic : int, default=200
        Synthetic samples drawn from the generator.
    n_eval : int, default=1000
        Samples per KL estimate.
    repeats : int, default=5
        Independent estimates per estimator on this setup (their spread is the
        estimator's own noise; the setup is fixed).

    Returns
    -------
    dict
        ``exact`` and ``histogram``: the gap estimates (one per repeat);
        ``reference``: an exact estimate from REFERENCE_FACTOR·n_eval samples.
    """
    from sklearn.mixture import GaussianMixture

    truth = Mixture(np.full(K + J, 1.0 / (K + J)), rng.random((K + J, dim)) * 10,
                    _random_covariances(rng, K + J, dim))
    anchor_parts = [rng.multivariate_normal(truth.means[k], truth.covariances[k], size=per_component)
                    for k in range(K)]
    anchor = np.vstack(anchor_parts)
    generator = Mixture(
        np.full(K + J + L, 1.0 / (K + J + L)),
        np.vstack([[part.mean(axis=0) for part in anchor_parts], truth.means[K:], rng.random((L, dim)) * 10]),
        np.concatenate([[np.cov(part, rowvar=False) + 1e-6 * np.eye(dim) for part in anchor_parts],
                        truth.covariances[K:], _random_covariances(rng, L, dim)]),
    )
    synthetic = generator.sample(n_synthetic, rng)
    seed = lambda: int(rng.integers(2**31))  # noqa: E731
    anchor_fit = Mixture.from_fitted(GaussianMixture(K, random_state=seed()).fit(anchor))
    synthetic_fit = Mixture.from_fitted(GaussianMixture(K + J + L, random_state=seed()).fit(synthetic))
    # A 20-fold larger exact estimate serves as the reference value of the gap.
    reference = (kl_exact(anchor_fit, truth, REFERENCE_FACTOR * n_eval, rng)
                 - kl_exact(synthetic_fit, truth, REFERENCE_FACTOR * n_eval, rng))
    result = {"reference": reference}
    for name, estimator in (("exact", kl_exact), ("histogram", kl_histogram)):
        result[name] = [estimator(anchor_fit, truth, n_eval, rng) - estimator(synthetic_fit, truth, n_eval, rng)
                        for _ in range(repeats)]
    return result


def round_summary(per_round: list[float]) -> tuple[float, float]:
    """Mean and standard error over rounds, as :func:`gmm_study` stores them.

    Parameters
    ----------
    per_round : list of float
        One sweep value's gaps, one per round (``sweeps[param][estimator]["rounds"][i]``).

    Returns
    -------
    mean, sem : float
        The average gap and its standard error (0 with a single round).
    """
    values = np.asarray(per_round, dtype=np.float64)
    sem = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else 0.0
    return float(values.mean()), float(sem)


def gmm_study(rounds: int = 6, seed: int = 0, *, values: tuple[int, ...] = SWEEP_VALUES,
              base: int = 2, repeats: int = 4, n_eval: int = 1000, params: str = "KJL") -> dict:
    """Sweep K, J and L over ``values`` with the other two at ``base``.

    Parameters
    ----------
    rounds : int, default=6
        Random setups per sweep point (the paper used 100).
    seed : int, default=0
        Master seed; every setup has its own stream derived from it.
    values : tuple of int, default=2…15
        Values of the swept parameter.
    base : int, default=2
        Value of the two parameters not swept.
    repeats : int, default=4
        KL-gap estimates per estimator per setup (at least 2 for a spread).
    n_eval : int, default=1000
        Samples per KL estimate (the paper's 1,000).
    params : str, default="KJL"
        Which parameters to sweep.

    Returns
    -------
    dict
        ``sweeps[param][estimator]`` with ``values``, ``mean`` (gap averaged over
        rounds), ``sem`` (standard error over rounds) and ``rounds`` (one list
        per value: the gap of each round, in round order, so that spreads and
        per-round correlations between estimators can be recomputed; round
        ``r`` of every estimator is the same random setup), for the estimators
        ``exact``, ``histogram`` and ``reference``; ``exact`` and ``histogram``
        also keep ``estimates`` (per value, per round: the ``repeats``
        individual gap estimates whose mean is the round's gap); ``noise[estimator]``: the
        run-to-run standard deviation of one gap estimate on a fixed setup
        (``median`` and root-mean-square ``rms`` over setups) and ``error``:
        the root-mean-square distance of one estimate from the reference; and
        the settings.
    """
    from threadpoolctl import threadpool_limits

    if repeats < 2:
        raise ValueError(f"repeats must be at least 2 to measure a spread, got {repeats}")
    estimators = ("exact", "histogram")
    sweeps: dict = {}
    spreads: dict[str, list[float]] = {name: [] for name in estimators}
    errors: dict[str, list[float]] = {name: [] for name in estimators}
    # Tiny 2-D linear algebra: BLAS threads only add contention.
    with threadpool_limits(1):
        for param in params:
            param_index = "KJL".index(param)
            sweep = {name: {"values": list(values), "mean": [], "sem": [], "rounds": []}
                     for name in (*estimators, "reference")}
            for name in estimators:
                sweep[name]["estimates"] = []
            for value in values:
                sizes = {"K": base, "J": base, "L": base, param: value}
                per_round: dict[str, list[float]] = {name: [] for name in sweep}
                per_repeat: dict[str, list[list[float]]] = {name: [] for name in estimators}
                for round_index in range(rounds):
                    rng = np.random.default_rng([seed, param_index, value, round_index])
                    gaps = one_setup(sizes["K"], sizes["J"], sizes["L"], rng, repeats=repeats, n_eval=n_eval)
                    per_round["reference"].append(float(gaps["reference"]))
                    for name in estimators:
                        estimates = np.asarray(gaps[name])
                        per_repeat[name].append([float(estimate) for estimate in estimates])
                        per_round[name].append(float(estimates.mean()))
                        spreads[name].append(float(estimates.std(ddof=1)))
                        errors[name].extend((estimates - gaps["reference"]).tolist())
                for name, means in per_round.items():
                    mean, sem = round_summary(means)
                    sweep[name]["mean"].append(mean)
                    sweep[name]["sem"].append(sem)
                    sweep[name]["rounds"].append(means)
                for name in estimators:
                    sweep[name]["estimates"].append(per_repeat[name])
            sweeps[param] = sweep
    noise = {name: {"median": float(np.median(spreads[name])),
                    "rms": float(np.sqrt(np.mean(np.square(spreads[name])))),
                    "error_rms": float(np.sqrt(np.mean(np.square(errors[name])))),
                    "error_median_abs": float(np.median(np.abs(errors[name])))}
             for name in estimators}
    return {
        "sweeps": sweeps,
        "noise": noise,
        "settings": {"rounds": rounds, "seed": seed, "base": base, "repeats": repeats, "n_eval": n_eval,
                     "reference_n_eval": REFERENCE_FACTOR * n_eval, "values": list(values), "dim": 2,
                     "per_component": 50, "n_synthetic": 200, "histogram_bins": 50},
    }


def plot_gmm(study: dict, path) -> None:
    """Plot the KL gap against each swept parameter (mean ± standard error over rounds) as a PNG.

    Parameters
    ----------
    study : dict
        Output of :func:`gmm_study`.
    path : str or Path
        Where to write the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(study["sweeps"])
    figure, axes = plt.subplots(1, count, figsize=(4.4 * count, 3.8), constrained_layout=True, squeeze=False)
    axes = axes[0]
    labels = {"K": "K (anchor components)", "J": "J (relevant injected)", "L": "L (irrelevant injected)"}
    for axis, (param, sweep) in zip(axes, study["sweeps"].items()):
        for name, style in (("exact", "o-"), ("histogram", "s--")):
            data = sweep[name]
            axis.errorbar(data["values"], data["mean"], yerr=data["sem"], fmt=style, capsize=3,
                          markersize=4, label=f"{name} (median run-to-run σ={study['noise'][name]['median']:.3g})")
        reference = sweep["reference"]
        axis.plot(reference["values"], reference["mean"], ":", color="black", linewidth=1,
                  label=f"reference (exact, {study['settings']['reference_n_eval']:,} samples)")
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_xlabel(labels[param])
        axis.set_ylabel("KL gap (nats)")
        axis.set_title(f"sweep of {param}, others = {study['settings']['base']}")
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)
    plt.close(figure)
