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

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from scipy.stats import entropy, multivariate_normal

SWEEP_VALUES = tuple(range(2, 16))


@dataclass
class Mixture:
    """A Gaussian mixture given by its parameters.

    Parameters
    ----------
    weights : ndarray of shape (m,)
        Component weights (sum to 1).
    means : ndarray of shape (m, d)
        Component means.
    covariances : ndarray of shape (m, d, d)
        Full component covariances.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    @classmethod
    def from_fitted(cls, fitted) -> "Mixture":
        """Parameters of a fitted ``sklearn.mixture.GaussianMixture`` (full covariances)."""
        return cls(fitted.weights_, fitted.means_, fitted.covariances_)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` points: a component per point, then a Gaussian draw from it."""
        counts = rng.multinomial(n, self.weights / self.weights.sum())
        parts = [rng.multivariate_normal(mean, cov, size=count)
                 for mean, cov, count in zip(self.means, self.covariances, counts) if count]
        points = np.vstack(parts)
        return points[rng.permutation(n)]

    def log_density(self, points: np.ndarray) -> np.ndarray:
        """Exact log-density at each point (what ``GaussianMixture.score_samples`` returns)."""
        per_component = np.column_stack([
            multivariate_normal.logpdf(points, mean, cov, allow_singular=True)
            for mean, cov in zip(self.means, self.covariances)
        ])
        return logsumexp(per_component + np.log(self.weights), axis=1)


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
        For each estimator, ``gaps`` (one per repeat).
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
    result = {}
    for name, estimator in (("exact", kl_exact), ("histogram", kl_histogram)):
        result[name] = [estimator(anchor_fit, truth, n_eval, rng) - estimator(synthetic_fit, truth, n_eval, rng)
                        for _ in range(repeats)]
    return result


def gmm_study(rounds: int = 8, seed: int = 0, *, values: tuple[int, ...] = SWEEP_VALUES,
              base: int = 2, repeats: int = 5, n_eval: int = 1000) -> dict:
    """Sweep K, J and L over ``values`` with the other two at ``base``.

    Parameters
    ----------
    rounds : int, default=8
        Random setups per sweep point (the paper used 100).
    seed : int, default=0
        Master seed; every setup has its own stream derived from it.
    values : tuple of int, default=2…15
        Values of the swept parameter.
    base : int, default=2
        Value of the two parameters not swept.
    repeats : int, default=5
        KL estimates per estimator per setup.
    n_eval : int, default=1000
        Samples per KL estimate.

    Returns
    -------
    dict
        ``sweeps[param][estimator]`` with ``values``, ``mean`` (gap averaged over
        rounds), ``sem`` (standard error over rounds); ``noise[estimator]``: the
        run-to-run standard deviation of one estimate on a fixed setup
        (root-mean-square over all setups), and the settings.
    """
    sweeps: dict = {}
    squared_spread = {"exact": [], "histogram": []}
    for param_index, param in enumerate("KJL"):
        sweep = {name: {"values": list(values), "mean": [], "sem": []} for name in squared_spread}
        for value in values:
            sizes = {"K": base, "J": base, "L": base, param: value}
            per_round = {name: [] for name in squared_spread}
            for round_index in range(rounds):
                rng = np.random.default_rng([seed, param_index, value, round_index])
                gaps = one_setup(sizes["K"], sizes["J"], sizes["L"], rng, repeats=repeats, n_eval=n_eval)
                for name, estimates in gaps.items():
                    per_round[name].append(np.mean(estimates))
                    squared_spread[name].append(np.var(estimates, ddof=1) if repeats > 1 else 0.0)
            for name, means in per_round.items():
                sweep[name]["mean"].append(float(np.mean(means)))
                sweep[name]["sem"].append(float(np.std(means, ddof=1) / np.sqrt(rounds)) if rounds > 1 else 0.0)
        sweeps[param] = sweep
    noise = {name: float(np.sqrt(np.mean(spread))) for name, spread in squared_spread.items()}
    return {
        "sweeps": sweeps,
        "noise": noise,
        "noise_ratio_histogram_over_exact": noise["histogram"] / noise["exact"] if noise["exact"] else None,
        "settings": {"rounds": rounds, "seed": seed, "base": base, "repeats": repeats, "n_eval": n_eval,
                     "dim": 2, "per_component": 50, "n_synthetic": 200, "histogram_bins": 50},
    }


def plot_gmm(study: dict, path) -> None:
    """Plot the KL gap against K, J and L (mean ± standard error over rounds) as a PNG.

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

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    labels = {"K": "K (anchor components)", "J": "J (relevant injected)", "L": "L (irrelevant injected)"}
    for axis, (param, sweep) in zip(axes, study["sweeps"].items()):
        for name, style in (("exact", "o-"), ("histogram", "s--")):
            data = sweep[name]
            axis.errorbar(data["values"], data["mean"], yerr=data["sem"], fmt=style, capsize=3,
                          markersize=4, label=f"{name} (noise σ={study['noise'][name]:.3f})")
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_xlabel(labels[param])
        axis.set_ylabel("KL gap (nats)")
        axis.set_title(f"sweep of {param}, others = {study['settings']['base']}")
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)
    plt.close(figure)
