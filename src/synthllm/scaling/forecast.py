"""Forecasts from a fitted one-dimensional law ``L(D)``.

- :func:`predict_with_band`: predicted error at given sizes, with a bootstrap
  confidence band when the fit has been bootstrapped.
- :func:`size_for_target`: data size at which the predicted error reaches a target.
- :func:`plateau_point`: the data size from which one more doubling of the data
  improves the error by less than a threshold.
- :func:`compare_models`: which of several fitted models reaches a target with
  the least data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from synthllm.scaling.fit import FitResult
from synthllm.scaling.laws import RectifiedLaw, VanillaLaw

__all__ = [
    "ModelComparison",
    "Plateau",
    "compare_models",
    "plateau_point",
    "predict_with_band",
    "size_for_target",
]

_SEARCH_RANGE = (1e-3, 1e30)


def predict_with_band(fit: FitResult, sizes: np.ndarray, level: float = 0.95) -> dict[str, np.ndarray]:
    """Predicted error at ``sizes`` with a pointwise band.

    The band is the forecast interval of :func:`synthllm.scaling.fit.form_risk`
    when it has run on ``fit`` (it includes the error of the law's form),
    otherwise the bootstrap band of :func:`synthllm.scaling.fit.bootstrap_fit`
    (noise around the fit only); without either there is no band.

    Parameters
    ----------
    fit : FitResult
        A fit.
    sizes : array-like
        Data sizes.
    level : float, default=0.95
        Band coverage.

    Returns
    -------
    dict
        ``"size"``, ``"error"`` and, with a band, ``"low"`` and ``"high"``.
    """
    sizes = np.asarray(sizes, dtype=float)
    forecast = {"size": sizes, "error": fit.predict(sizes)}
    if fit.form_risk is not None:
        forecast["low"], forecast["high"] = fit.form_risk.band(forecast["error"], sizes, level)
    elif fit.bootstrap is not None:
        forecast["low"], forecast["high"] = fit.bootstrap.band(sizes, level)
    return forecast


def size_for_target(law: RectifiedLaw | VanillaLaw, target_error: float) -> float:
    """Data size at which the law's predicted error falls to ``target_error``.

    Closed form: ``D = (B/(T - E) - D_l)^(1/beta)`` (``D_l = 0`` for the vanilla law).

    Parameters
    ----------
    law : RectifiedLaw or VanillaLaw
        Fitted law.
    target_error : float
        Target error ``T``.

    Returns
    -------
    float
        The size; ``0.0`` if the error at D = 0 already meets the target (rectified
        law), ``inf`` if the target is at or below the irreducible error ``E``.
    """
    if target_error <= law.E:
        return float("inf")
    pre_learned = law.D_l if isinstance(law, RectifiedLaw) else 0.0
    power = law.B / (target_error - law.E) - pre_learned
    if power <= 0:
        return 0.0
    return float(power ** (1.0 / law.beta))


@dataclass(frozen=True)
class Plateau:
    """Where the gains of one more doubling of data fall below a threshold.

    Attributes
    ----------
    size : float
        Smallest data size beyond the steepest part of the curve from which
        ``L(D) - L(2D) < threshold``.
    error : float
        Predicted error at that size.
    gain_per_doubling : float
        ``L(D) - L(2D)`` at that size (equals ``threshold`` unless the curve is
        already flat at the smallest size searched).
    threshold : float
        The threshold used.
    """

    size: float
    error: float
    gain_per_doubling: float
    threshold: float


def _gain_per_doubling(law, log2_size: float) -> float:
    size = 2.0**log2_size
    return float(law.predict(size) - law.predict(2.0 * size))


def plateau_point(law: RectifiedLaw | VanillaLaw, threshold: float) -> Plateau:
    """Data size from which doubling the data improves the error by less than ``threshold``.

    The gain per doubling ``g(D) = L(D) - L(2D)`` of the rectified law first
    grows (the pre-learned phase) and then decays towards 0 (the power-law
    phase); the plateau is the root of ``g(D) = threshold`` after the peak.

    Parameters
    ----------
    law : RectifiedLaw or VanillaLaw
        Fitted law.
    threshold : float
        Smallest gain per doubling still considered worth it, in error units.

    Returns
    -------
    Plateau
    """
    if threshold <= 0:
        raise ValueError("threshold must be positive")
    log2_grid = np.linspace(np.log2(_SEARCH_RANGE[0]), np.log2(_SEARCH_RANGE[1]), 2000)
    gains = law.predict(2.0**log2_grid) - law.predict(2.0 ** (log2_grid + 1.0))
    peak = int(np.argmax(gains))
    if gains[peak] < threshold:
        # Never worth a doubling: the plateau starts where the search starts.
        start = 2.0 ** log2_grid[0]
        return Plateau(start, float(law.predict(start)), float(gains[0]), threshold)
    below = np.nonzero(gains[peak:] < threshold)[0]
    if below.size == 0:
        return Plateau(float("inf"), float(law.E), 0.0, threshold)
    upper = peak + int(below[0])
    root = brentq(lambda value: _gain_per_doubling(law, value) - threshold, log2_grid[upper - 1], log2_grid[upper])
    size = float(2.0**root)
    return Plateau(size, float(law.predict(size)), _gain_per_doubling(law, root), threshold)


@dataclass(frozen=True)
class ModelComparison:
    """Ranking of models by the data they need to reach a target error.

    Attributes
    ----------
    target_error : float
        The target.
    sizes : dict[str, float]
        Model name -> data size needed (``inf`` if unreachable).
    best : str or None
        Model that needs the least data; ``None`` if no model can reach it.
    """

    target_error: float
    sizes: dict[str, float]
    best: str | None


def compare_models(laws: dict[str, RectifiedLaw | VanillaLaw], target_error: float) -> ModelComparison:
    """Which model reaches ``target_error`` with the least data.

    Parameters
    ----------
    laws : dict
        Model name -> fitted law.
    target_error : float
        Target error.

    Returns
    -------
    ModelComparison
    """
    sizes = {name: size_for_target(law, target_error) for name, law in laws.items()}
    reachable = {name: size for name, size in sizes.items() if np.isfinite(size)}
    best = min(reachable, key=reachable.get) if reachable else None
    return ModelComparison(target_error=target_error, sizes=sizes, best=best)
