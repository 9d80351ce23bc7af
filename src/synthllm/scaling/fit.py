"""Fitting scaling laws in log space.

All fitters minimise a Huber loss on log residuals, ``sum huber_delta(log L_hat - log L)``
(``delta=None`` gives least squares), with the analytical gradients from
:mod:`synthllm.scaling.laws` (scipy's L-BFGS-B, or trust-region least squares
for ``method="forecast"``), from many starting points:

- rectified and vanilla laws: the starting points come from a grid over the
  nonlinear parameters (``beta`` and, for the rectified law, the position of the
  bend ``-b/beta``). For each grid cell the linear parameters (``E`` and the
  scale) have a closed-form relative-least-squares solution, so the whole grid is
  scored in one vectorised pass and only its best cells are refined.
- Chinchilla law: Epoch AI's grid of 4,500 starts (alpha, beta in 0..2 step 0.5,
  e in -1..1 step 0.5, a, b in 0..25 step 5), each refined with L-BFGS-B,
  keeping the best converged run (Besiroglu et al., 2024).
- ``method="two_stage"``: Lin et al.'s (2024) procedure, after their public
  ``fit_law.py``: a surrogate fit with one auxiliary variable per point, then a
  refit of ``A`` and ``E`` with ``beta`` and ``B'`` fixed, from a deterministic
  start; only fits with ``A > E`` are accepted. Their BFGS with numerical
  gradients gave results that moved with the machine (13 of 90 curves by more
  than 1e-3 between two environments); both stages are now trust-region least
  squares with analytic Jacobians, which is deterministic.
- ``method="forecast"``: the fit made for extrapolation. On Lin et al.'s 90
  curves (fit up to 204,800 samples, predict 409,600..1,638,400) the other
  fitters miss by 0.035-0.043 RMSD of log loss, and adding the D = 0 point made
  every one of them worse; their floors ``E`` either collapse to ~1e-11 or sit
  above where the curve goes next. Three changes bring the mean to 0.021
  without and 0.024 with the D = 0 point (bench/results/scaling.md):
  weights that grow towards the largest sizes (``2**(-0.5 k)`` for a point
  ``k`` doublings below the largest), so that the tail the forecast continues
  counts most and an ill-fitting D = 0 point cannot bend the curve; ``E``
  bounded to ``[1e-3, 1] x`` the lowest observed error with a log-normal
  prior centred on 0.4 x that error (sd 0.25 in log E), weighed against the
  data with their own noise scale, so that tight curves (SynthLLM's Table 1,
  residuals ~1e-4) barely feel it; and the Huber loss (``delta = 0.01``)
  solved with ``scipy.optimize.least_squares`` and the analytic Jacobian.
  The prior's constants were chosen on those same 90 curves; neighbouring
  values (centre 0.3-0.4, sd 0.1-0.5, tail weight 0.5-0.8) all stay below
  0.028 (``bench/bench_scaling.py --sensitivity``).

Uncertainty: a residual bootstrap in log space (:func:`bootstrap_fit`) gives
parameter uncertainty and the noise around the fit; :func:`form_risk` gives
forecast intervals that include the error of the law's form: the fit's own
procedure is rerun leaving out the 1..4 largest sizes, and how far those refits
miss, per doubling of extrapolation, widens the band with the distance beyond
the data. Its 95% intervals cover 97.4% (without D = 0) and 97.8% (with) of
Lin et al.'s 270 held-out points.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from itertools import product
from typing import Literal

import numpy as np
from scipy.optimize import least_squares, minimize
from scipy.special import expit
from scipy.stats import norm
from threadpoolctl import threadpool_limits

from synthllm.scaling.laws import (
    ChinchillaLaw,
    RectifiedLaw,
    VanillaLaw,
    chinchilla_log_predict,
    rectified_log_predict,
    vanilla_log_predict,
)

__all__ = [
    "BootstrapResult",
    "ChinchillaFit",
    "FitResult",
    "FormRisk",
    "bootstrap_fit",
    "fit_chinchilla",
    "fit_law",
    "form_risk",
    "tail_weights",
    "huber",
    "rmsd_log",
]

LawName = Literal["rectified", "vanilla"]
FitMethod = Literal["multistart", "two_stage", "forecast"]
#: Huber switch point for one-dimensional fits: lowest extrapolation error on Lin et al.'s curves.
DEFAULT_DELTA = 1e-2
#: Epoch AI's switch point for the Chinchilla fit.
EPOCH_DELTA = 1e-3
_BETA_BOUNDS = (1e-4, 10.0)
#: ``method="forecast"``: weight of a point halves every 1/TAIL_WEIGHT doublings below the largest size.
TAIL_WEIGHT = 0.5
#: ``method="forecast"``: prior ``log E ~ N(log(FLOOR_PRIOR[0] * lowest error), FLOOR_PRIOR[1])``.
FLOOR_PRIOR = (0.4, 0.25)
#: ``method="forecast"``: hard bounds on ``E`` as fractions of the lowest observed error.
FLOOR_BOUNDS = (1e-3, 1.0)
_NOISE_FLOOR = 1e-4


def huber(residual: np.ndarray, delta: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of each residual and its derivative.

    Parameters
    ----------
    residual : ndarray
        Residuals (here: predicted minus observed log error).
    delta : float or None
        Switch point between the quadratic and the linear part; ``None`` gives
        the plain squared loss ``r**2 / 2``.

    Returns
    -------
    loss : ndarray
        Per-residual loss.
    derivative : ndarray
        d loss / d residual.
    """
    if delta is None:
        return 0.5 * residual**2, residual
    derivative = np.clip(residual, -delta, delta)
    # 0.5 r^2 inside [-delta, delta], delta (|r| - delta/2) outside, written without a branch.
    loss = derivative * (residual - 0.5 * derivative)
    return loss, derivative


def rmsd_log(predicted: np.ndarray, observed: np.ndarray) -> float:
    """Root-mean-square deviation between ``log(predicted)`` and ``log(observed)``.

    Parameters
    ----------
    predicted, observed : ndarray
        Positive values of the same shape.

    Returns
    -------
    float
    """
    return float(np.sqrt(np.mean((np.log(predicted) - np.log(observed)) ** 2)))


def _log_size(sizes: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(sizes)


def _huber_objective(theta, log_predict, inputs, log_observed, delta):
    log_predicted, jacobian = log_predict(theta, *inputs)
    loss, derivative = huber(log_predicted - log_observed, delta)
    value = float(np.sum(loss))
    if not np.isfinite(value):
        return np.inf, np.zeros_like(theta)
    return value, derivative @ jacobian


# Losses on log residuals are tiny (~1e-4); scipy's default tolerances stop far from the optimum.
_TIGHT = {"ftol": 1e-15, "gtol": 1e-11, "maxiter": 3000}


def _refine(theta0, log_predict, inputs, log_observed, delta, bounds, options=_TIGHT):
    return minimize(
        _huber_objective,
        np.asarray(theta0, float),
        args=(log_predict, inputs, log_observed, delta),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options=options,
    )


def _single_threaded_blas(function):
    """Run ``function`` with a single BLAS thread.

    The problems are tiny; a multi-threaded BLAS only adds synchronisation,
    which made L-BFGS-B 15x slower on a busy machine.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return wrapper


def _linear_scale_fit(basis: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ``observed ~ E + K * basis`` in relative least squares, per grid row.

    ``basis`` has shape (grid, n); returns ``E`` and ``K`` of shape (grid,),
    clipped to small positive values so their logs exist.
    """
    weights = 1.0 / observed**2
    s0 = weights.sum()
    s1 = basis @ weights
    s2 = (basis**2) @ weights
    t0 = (weights * observed).sum()
    t1 = basis @ (weights * observed)
    determinant = s0 * s2 - s1**2
    with np.errstate(divide="ignore", invalid="ignore"):
        floor = (s2 * t0 - s1 * t1) / determinant
        scale = (s0 * t1 - s1 * t0) / determinant
    tiny = 1e-6 * observed.max()
    floor = np.where(np.isfinite(floor), np.maximum(floor, tiny), tiny)
    scale = np.where(np.isfinite(scale), np.maximum(scale, tiny), tiny)
    return floor, scale


def _rectified_grid(log_size: np.ndarray, observed: np.ndarray, grid_size: int) -> np.ndarray:
    """Candidate ``theta`` rows for the rectified law (grid_size**2, 4) and their log predictions."""
    finite = log_size[np.isfinite(log_size)]
    betas = np.geomspace(0.05, 3.0, grid_size)
    bends = np.linspace(finite.min() - 4.0, finite.max() + 4.0, grid_size)
    beta, bend = (grid.ravel() for grid in np.meshgrid(betas, bends))
    offset = -beta * bend
    with np.errstate(invalid="ignore"):
        slope = beta[:, None] * log_size[None, :] + offset[:, None]
    basis = 1.0 / (1.0 + np.exp(np.clip(slope, -700, 700)))
    floor, scale = _linear_scale_fit(basis, observed)
    candidates = np.column_stack([np.log(floor), np.log(scale), offset, beta])
    return candidates, np.log(floor[:, None] + scale[:, None] * basis)


def _vanilla_grid(log_size: np.ndarray, observed: np.ndarray, grid_size: int) -> np.ndarray:
    """Candidate ``theta`` rows for the vanilla law (grid_size, 3) and their log predictions."""
    betas = np.geomspace(0.01, 3.0, grid_size)
    basis = np.exp(-betas[:, None] * log_size[None, :])
    floor, scale = _linear_scale_fit(basis, observed)
    candidates = np.column_stack([np.log(floor), np.log(scale), betas])
    return candidates, np.log(floor[:, None] + scale[:, None] * basis)


def _best_grid_starts(make_grid, log_size, log_observed, delta, grid_size, n_refine) -> np.ndarray:
    """The ``n_refine`` grid candidates with the lowest loss, best first."""
    candidates, log_predicted = make_grid(log_size, np.exp(log_observed), grid_size)
    losses = huber(log_predicted - log_observed[None, :], delta)[0].sum(axis=1)
    losses = np.where(np.isfinite(losses), losses, np.inf)
    return candidates[np.argsort(losses)[:n_refine]]


@dataclass
class BootstrapResult:
    """Bootstrap replicates of a fit.

    Attributes
    ----------
    thetas : ndarray of shape (n_boot, n_params)
        Internal parameter vectors of the refits.
    laws : list
        The refitted laws (same order as ``thetas``).
    """

    thetas: np.ndarray
    laws: list

    def param_table(self) -> dict[str, dict[str, float]]:
        """Standard deviation and 95% percentile interval of each interpretable parameter.

        Returns
        -------
        dict
            ``{name: {"std", "low", "high"}}``.
        """
        names = list(self.laws[0].params())
        values = np.array([[law.params()[name] for name in names] for law in self.laws])
        low, high = np.percentile(values, [2.5, 97.5], axis=0)
        return {
            name: {"std": float(values[:, i].std(ddof=1)), "low": float(low[i]), "high": float(high[i])}
            for i, name in enumerate(names)
        }

    def band(self, sizes: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise confidence band of the fitted curve.

        Parameters
        ----------
        sizes : ndarray
            Data sizes.
        level : float, default=0.95
            Coverage of the percentile band.

        Returns
        -------
        low, high : ndarray
            Lower and upper band at each size.
        """
        curves = np.array([law.predict(sizes) for law in self.laws])
        tail = 50.0 * (1.0 - level)
        low, high = np.percentile(curves, [tail, 100.0 - tail], axis=0)
        return low, high


@dataclass
class FitResult:
    """A fitted one-dimensional law ``L(D)``.

    Attributes
    ----------
    law : RectifiedLaw or VanillaLaw
        The best fit.
    sizes, errors : ndarray
        The data it was fitted on.
    objective : float
        Final value of the fitted loss (Huber or, for two-stage, mean squared).
    method : str
        ``"multistart"`` or ``"two_stage"``.
    delta : float or None
        Huber switch point used.
    n_starts : int
        Number of local refinements run.
    bootstrap : BootstrapResult or None
        Filled by :func:`bootstrap_fit`.
    settings : dict
        The keyword arguments of :func:`fit_law` that made this fit (refits
        such as :func:`form_risk` reuse them).
    form_risk : FormRisk or None
        Filled by :func:`form_risk`.
    """

    law: RectifiedLaw | VanillaLaw
    sizes: np.ndarray
    errors: np.ndarray
    objective: float
    method: str
    delta: float | None
    n_starts: int
    bootstrap: BootstrapResult | None = field(default=None, repr=False)
    settings: dict = field(default_factory=dict, repr=False)
    form_risk: FormRisk | None = field(default=None, repr=False)

    @property
    def rmsd_log(self) -> float:
        """In-sample RMSD between log prediction and log observation."""
        return rmsd_log(self.law.predict(self.sizes), self.errors)

    def predict(self, sizes: np.ndarray | float) -> np.ndarray:
        """Predicted error at ``sizes`` (see the law's ``predict``)."""
        return self.law.predict(sizes)


def _law_setup(law: LawName):
    if law == "rectified":
        return RectifiedLaw, rectified_log_predict, _rectified_grid, [(None, None)] * 3 + [_BETA_BOUNDS]
    if law == "vanilla":
        return VanillaLaw, vanilla_log_predict, _vanilla_grid, [(None, None)] * 2 + [_BETA_BOUNDS]
    raise ValueError(f"unknown law {law!r}; expected 'rectified' or 'vanilla'")


def _validate_curve(sizes, errors, law: LawName) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.asarray(sizes, dtype=float).ravel()
    errors = np.asarray(errors, dtype=float).ravel()
    if sizes.shape != errors.shape:
        raise ValueError(f"sizes and errors differ in length ({sizes.size} vs {errors.size})")
    if sizes.size < 3:
        raise ValueError(f"need at least 3 points to fit a scaling law, got {sizes.size}")
    if not (np.all(np.isfinite(sizes)) and np.all(np.isfinite(errors))):
        raise ValueError("sizes and errors must be finite numbers")
    if np.any(errors <= 0):
        raise ValueError("errors must be positive (the fit is in log space)")
    if np.any(sizes < 0) or (law == "vanilla" and np.any(sizes == 0)):
        raise ValueError("sizes must be positive (0 is allowed for the rectified law only)")
    return sizes, errors


@_single_threaded_blas
def fit_law(
    sizes: np.ndarray,
    errors: np.ndarray,
    law: LawName = "rectified",
    *,
    method: FitMethod = "multistart",
    delta: float | None = DEFAULT_DELTA,
    grid_size: int = 16,
    n_refine: int = 4,
    tail_weight: float = TAIL_WEIGHT,
    floor_prior: tuple[float, float] | None = FLOOR_PRIOR,
) -> FitResult:
    """Fit ``L(D)`` to one curve of (data size, error) points.

    Parameters
    ----------
    sizes : array-like of shape (n,)
        Training data sizes (tokens or samples). 0 is allowed for the rectified law.
    errors : array-like of shape (n,)
        Positive errors (losses or error rates) at those sizes.
    law : {"rectified", "vanilla"}, default="rectified"
        Which law to fit.
    method : {"multistart", "two_stage", "forecast"}, default="multistart"
        ``"multistart"``: Huber loss on log error, L-BFGS-B from the best
        ``n_refine`` cells of a vectorised start grid. ``"two_stage"``: Lin et
        al.'s procedure (rectified law only). ``"forecast"``: the fit made for
        extrapolation (module docstring): Huber loss with weights growing
        towards the largest sizes, ``E`` bounded to ``[1e-3, 1] x`` the lowest
        observed error with a log-normal prior, trust-region least squares.
    delta : float or None, default=1e-2
        Huber switch point on log residuals; ``None`` for least squares.
    grid_size : int, default=16
        Grid points per nonlinear parameter.
    n_refine : int, default=4
        How many of the best grid cells are refined.
    tail_weight : float, default=0.5
        ``method="forecast"`` only: a point ``k`` doublings below the largest
        size has weight ``2**(-tail_weight * k)`` (D = 0 gets the weight of the
        smallest positive size); 0 weighs all points equally.
    floor_prior : (float, float) or None, default=(0.4, 0.25)
        ``method="forecast"`` only: ``(m, s)``, the prior
        ``log E ~ N(log(m * lowest error), s)``, weighed against the data with
        their noise scale (the weighted RMS residual of a fit without the
        prior); ``None`` keeps only the bounds on ``E``.

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        On fewer than 3 points, non-positive errors or invalid sizes.
    """
    sizes, errors = _validate_curve(sizes, errors, law)
    settings = {"law": law, "method": method, "delta": delta, "grid_size": grid_size, "n_refine": n_refine,
                "tail_weight": tail_weight, "floor_prior": floor_prior}
    if method == "two_stage":
        if law != "rectified":
            raise ValueError("the two-stage procedure is defined for the rectified law only")
        result = _fit_two_stage(sizes, errors)
        result.settings = settings
        return result
    if method == "forecast":
        return _fit_forecast(sizes, errors, settings)
    if method != "multistart":
        raise ValueError(f"unknown method {method!r}; expected 'multistart', 'two_stage' or 'forecast'")
    law_class, log_predict, make_grid, bounds = _law_setup(law)
    log_size = _log_size(sizes)
    log_observed = np.log(errors)
    inputs = (log_size,)
    starts = _best_grid_starts(make_grid, log_size, log_observed, delta, grid_size, n_refine)
    best = None
    for theta0 in starts:
        result = _refine(theta0, log_predict, inputs, log_observed, delta, bounds)
        if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
            best = result
    if best is None:
        raise RuntimeError("every L-BFGS-B run ended with a non-finite loss")
    return FitResult(
        law=law_class.from_theta(best.x),
        sizes=sizes,
        errors=errors,
        objective=float(best.fun),
        method="multistart",
        delta=delta,
        n_starts=len(starts),
        settings=settings,
    )


def _sqrt_huber(residual: np.ndarray, delta: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Residuals whose half squares are the Huber loss, and their derivative.

    ``r`` inside ``[-delta, delta]``, ``sign(r) sqrt(2 delta |r| - delta**2)``
    outside, so a least-squares solver on them minimises the Huber loss.
    """
    if delta is None:
        return residual, np.ones_like(residual)
    magnitude = np.abs(residual)
    outside = magnitude > delta
    transformed = np.where(outside, np.sign(residual) * np.sqrt(np.maximum(2 * delta * magnitude - delta**2, 0.0)),
                           residual)
    derivative = np.where(outside, delta / np.maximum(np.abs(transformed), 1e-300), 1.0)
    return transformed, derivative


def tail_weights(sizes: np.ndarray, tail_weight: float) -> np.ndarray:
    """Weight of each point for ``method="forecast"``: ``2**(-tail_weight * doublings below the largest size)``.

    Parameters
    ----------
    sizes : ndarray
        Data sizes (0 allowed: it gets the weight of the smallest positive size).
    tail_weight : float
        Decay per doubling; 0 gives equal weights.

    Returns
    -------
    ndarray
    """
    positive = sizes > 0
    log2_size = np.log2(np.where(positive, sizes, np.min(sizes[positive])))
    return np.exp2(-tail_weight * (log2_size.max() - log2_size))


def _fit_forecast(sizes: np.ndarray, errors: np.ndarray, settings: dict) -> FitResult:
    """``method="forecast"``: weighted Huber least squares with a bounded, log-normal prior on ``E``."""
    law_class, log_predict, make_grid, _ = _law_setup(settings["law"])
    delta, floor_prior = settings["delta"], settings["floor_prior"]
    log_size = _log_size(sizes)
    log_observed = np.log(errors)
    root_weight = np.sqrt(tail_weights(sizes, settings["tail_weight"]))
    lowest = float(errors[sizes > 0].min() if np.any(sizes > 0) else errors.min())
    n_theta = 4 if settings["law"] == "rectified" else 3
    lower = np.full(n_theta, -np.inf)
    upper = np.full(n_theta, np.inf)
    lower[0], upper[0] = np.log(FLOOR_BOUNDS[0] * lowest), np.log(FLOOR_BOUNDS[1] * lowest)
    lower[-1], upper[-1] = _BETA_BOUNDS
    if settings["law"] == "rectified":  # keep D_l = exp(-b) a finite positive float
        lower[2], upper[2] = -300.0, 300.0

    def solve(prior_mean: float | None, prior_scale: float) -> tuple[np.ndarray, float, int]:
        def residuals(theta):
            log_predicted, _ = log_predict(theta, log_size)
            value = root_weight * _sqrt_huber(log_predicted - log_observed, delta)[0]
            return value if prior_mean is None else np.append(value, prior_scale * (theta[0] - prior_mean))

        def jacobian(theta):
            log_predicted, jac = log_predict(theta, log_size)
            scaled = (root_weight * _sqrt_huber(log_predicted - log_observed, delta)[1])[:, None] * jac
            if prior_mean is None:
                return scaled
            prior_row = np.zeros(n_theta)
            prior_row[0] = prior_scale
            return np.vstack([scaled, prior_row])

        candidates, log_predicted = make_grid(log_size, errors, settings["grid_size"])
        losses = 2 * (root_weight**2 * huber(log_predicted - log_observed[None, :], delta)[0]).sum(axis=1)
        if prior_mean is not None:
            losses = losses + (prior_scale * (candidates[:, 0] - prior_mean)) ** 2
        losses = np.where(np.isfinite(losses), losses, np.inf)
        starts = candidates[np.argsort(losses, kind="stable")[: settings["n_refine"]]]
        best = None
        for theta0 in starts:
            theta0 = np.clip(theta0, np.nextafter(lower, upper) + 1e-9, upper - 1e-9)
            run = least_squares(residuals, theta0, jac=jacobian, bounds=(lower, upper), method="trf",
                                x_scale="jac", ftol=1e-15, xtol=1e-15, gtol=1e-15, max_nfev=2000)
            if np.isfinite(run.cost) and (best is None or run.cost < best.cost):
                best = run
        if best is None:
            raise RuntimeError("every least-squares run ended with a non-finite loss")
        return best.x, float(best.cost), len(starts)

    theta, cost, n_starts = solve(None, 0.0)
    if floor_prior is not None:
        # The prior is weighed against the data with their own noise scale (a MAP estimate under
        # Gaussian log-residuals of that scale): tight data (SynthLLM's Table 1) barely feel it.
        log_predicted, _ = log_predict(theta, log_size)
        weights = root_weight**2
        noise = max(float(np.sqrt(np.sum(weights * (log_predicted - log_observed) ** 2) / weights.sum())),
                    _NOISE_FLOOR)
        prior_mean = float(np.log(floor_prior[0] * lowest))
        theta, cost, more = solve(prior_mean, noise / floor_prior[1])
        n_starts += more
    return FitResult(
        law=law_class.from_theta(theta),
        sizes=sizes,
        errors=errors,
        objective=cost,
        method="forecast",
        delta=delta,
        n_starts=n_starts,
        settings=settings,
    )


@dataclass
class FormRisk:
    """Extrapolation error of a fit's own procedure, measured on its own curve.

    The fit is redone leaving out the ``k = 1 .. max_left_out`` largest sizes;
    each refit predicts the points it left out. The log errors of those
    predictions against their distance (in doublings beyond the largest size
    the refit saw) give the growth ``slope`` of the error per doubling; with
    the in-sample residual scale this makes the band

        ``log L = log L_hat  ±  z * sqrt(residual_sd**2 + (slope * t)**2)``

    at ``t`` doublings beyond the largest fitted size (``t = 0`` inside the data).

    Attributes
    ----------
    slope : float
        Root mean square of ``log error / distance`` over the left-out
        predictions (and ``prior_pairs`` pseudo-predictions at ``prior_slope``).
    residual_sd : float
        In-sample RMS log residual of the fit.
    largest_size : float
        Largest size the fit saw.
    distances, log_errors : ndarray
        The left-out predictions: doublings beyond the refit's largest size, and
        predicted minus observed log error.
    """

    slope: float
    residual_sd: float
    largest_size: float
    distances: np.ndarray
    log_errors: np.ndarray

    def log_sd(self, sizes: np.ndarray) -> np.ndarray:
        """Standard deviation of the log error of a forecast at ``sizes``."""
        sizes = np.asarray(sizes, dtype=float)
        with np.errstate(divide="ignore"):
            distance = np.maximum(np.log2(np.maximum(sizes, 0.0) / self.largest_size), 0.0)
        return np.sqrt(self.residual_sd**2 + (self.slope * distance) ** 2)

    def band(self, predicted: np.ndarray, sizes: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Forecast interval around ``predicted`` errors at ``sizes``.

        Parameters
        ----------
        predicted : ndarray
            The fit's predicted errors at ``sizes``.
        sizes : ndarray
            Data sizes.
        level : float, default=0.95
            Intended coverage (normal quantile on the log scale).

        Returns
        -------
        low, high : ndarray
        """
        half_width = norm.ppf(0.5 + level / 2) * self.log_sd(sizes)
        return predicted * np.exp(-half_width), predicted * np.exp(half_width)


#: Pooled RMS extrapolation error per doubling of the forecast fit on Lin et al.'s 90 curves (tail refits).
PRIOR_SLOPE = 0.018


def form_risk(fit: FitResult, max_left_out: int = 4, min_points: int = 4, *,
              prior_slope: float = PRIOR_SLOPE, prior_pairs: float = 2.0) -> FormRisk:
    """Measure how far the fit's own procedure misses when it extrapolates this curve.

    Refits (same law, method and settings as ``fit``) leave out the ``k``
    largest sizes for ``k = 1 .. max_left_out`` while at least ``min_points``
    positive sizes remain, and predict what they left out; see
    :class:`FormRisk` for the band this gives. Unlike the residual bootstrap it
    includes the error of the law's form, which is what dominates forecasts
    (on Lin et al.'s curves the stated 95% bands then cover 97-98% of held-out
    points; docs/scaling.md). The result is stored on ``fit.form_risk``.

    Parameters
    ----------
    fit : FitResult
        A fit from :func:`fit_law`.
    max_left_out : int, default=4
        Largest number of points left out.
    min_points : int, default=4
        Fewest positive sizes a refit may use (the rectified law has 4 parameters).
    prior_slope : float, default=0.018
        Error per doubling that a curve is assumed to have before its own
        refits are seen: the pooled value of Lin et al.'s 90 curves. It counts
        as ``prior_pairs`` left-out predictions, so a short or very smooth curve
        (SynthLLM's Table 1 allows one refit, on points that are themselves a
        fitted law) does not get a band of zero width; 0 turns it off.
    prior_pairs : float, default=2
        Weight of ``prior_slope``, in left-out predictions.

    Returns
    -------
    FormRisk

    Raises
    ------
    ValueError
        When the curve is too short for even one refit.
    """
    order = np.argsort(fit.sizes, kind="stable")
    sizes, errors = fit.sizes[order], fit.errors[order]
    settings = {key: value for key, value in fit.settings.items()} or {"law": fit.law.name}
    distances, log_errors = [], []
    for left_out in range(1, max_left_out + 1):
        kept = sizes.size - left_out
        if np.count_nonzero(sizes[:kept] > 0) < min_points:
            break
        refit = fit_law(sizes[:kept], errors[:kept], **settings)
        distances.extend(np.log2(sizes[kept:] / sizes[kept - 1]).tolist())
        log_errors.extend((np.log(refit.predict(sizes[kept:])) - np.log(errors[kept:])).tolist())
    if not distances:
        raise ValueError(f"form_risk needs more than {min_points} positive sizes, got {np.count_nonzero(sizes > 0)}")
    distances, log_errors = np.array(distances), np.array(log_errors)
    residuals = np.log(fit.predict(sizes)) - np.log(errors)
    fit.form_risk = FormRisk(
        slope=float(np.sqrt((np.sum((log_errors / distances) ** 2) + prior_pairs * prior_slope**2)
                            / (distances.size + prior_pairs))),
        residual_sd=float(np.sqrt(np.mean(residuals**2))),
        largest_size=float(sizes.max()),
        distances=distances,
        log_errors=log_errors,
    )
    return fit.form_risk


def _fit_two_stage(sizes: np.ndarray, errors: np.ndarray) -> FitResult:
    """Lin et al.'s two-stage rectified-law fit (after their ``fit_law.py``), made deterministic.

    Stage 1 fits ``(A, B', beta, E)`` together with one surrogate per point
    (``u_i = log Z_i**2`` stands in for ``beta*x_i + B'``), minimising the
    squared log-error of ``(A + E e^u)/(1 + e^u)`` plus the squared mismatch
    ``u - beta*x - B'``. Stage 2 keeps ``beta`` and ``B'`` and refits ``A`` and
    ``E`` by least squares on log error. As in the original, D = 0 enters as
    ``log(1e-10)`` and the start is deterministic. Their optimiser (scipy's
    BFGS with numerical gradients) gave results that changed with the machine;
    here both stages are bounded trust-region least squares with analytic
    Jacobians (``E >= 0`` replaces their ``|E|``).
    """
    log_x = np.log(np.where(sizes > 0, sizes, 1e-10))
    log_y = np.log(errors)
    n_points = log_x.size
    tight = {"method": "trf", "ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15, "max_nfev": 5000}
    # Lin et al.'s start: A = max L, B' = 0, beta = 1, E = geometric mean of max and min L, Z = 1 (u = 0).
    initial = np.concatenate([[np.exp(log_y.max()), 0.0, 1.0, np.exp((log_y.max() + log_y.min()) / 2)],
                              np.zeros(n_points)])

    def stage1_residuals(params):
        start, offset, beta, floor = params[:4]
        surrogate = params[4:]
        mixed = np.log(start + floor * np.exp(surrogate)) - np.logaddexp(0.0, surrogate)
        return np.concatenate([mixed - log_y, surrogate - beta * log_x - offset])

    def stage1_jacobian(params):
        start, offset, beta, floor = params[:4]
        surrogate = params[4:]
        numerator = start + floor * np.exp(surrogate)
        jacobian = np.zeros((2 * n_points, 4 + n_points))
        jacobian[:n_points, 0] = 1.0 / numerator
        jacobian[:n_points, 3] = np.exp(surrogate) / numerator
        diagonal = floor * np.exp(surrogate) / numerator - expit(surrogate)
        jacobian[np.arange(n_points), 4 + np.arange(n_points)] = diagonal
        jacobian[n_points:, 1] = -1.0
        jacobian[n_points:, 2] = -log_x
        jacobian[n_points + np.arange(n_points), 4 + np.arange(n_points)] = 1.0
        return jacobian

    lower = np.concatenate([[1e-12, -np.inf, -np.inf, 0.0], np.full(n_points, -np.inf)])
    stage1 = least_squares(stage1_residuals, initial, jac=stage1_jacobian, bounds=(lower, np.inf), **tight)
    start, offset, beta, floor = stage1.x[:4]
    learned_shape = expit(-(beta * log_x + offset))  # 1 / (1 + exp(beta*x + B'))

    def stage2_residuals(levels):
        level_start, level_floor = levels
        return np.log((level_start - level_floor) * learned_shape + level_floor) - log_y

    def stage2_jacobian(levels):
        level_start, level_floor = levels
        value = (level_start - level_floor) * learned_shape + level_floor
        return np.column_stack([learned_shape / value, (1.0 - learned_shape) / value])

    stage2 = least_squares(stage2_residuals, [start, floor], jac=stage2_jacobian,
                           bounds=([1e-12, 0.0], [np.inf, np.inf]), **tight)
    start, floor = stage2.x
    if not start > floor or floor <= 0:
        raise RuntimeError("two-stage fit rejected: it ended with A <= E or E = 0 (Lin et al. accept only A > E)")
    theta = np.array([np.log(floor), np.log(start - floor), offset, beta])
    return FitResult(
        law=RectifiedLaw.from_theta(theta),
        sizes=sizes,
        errors=errors,
        objective=float(np.mean(stage2.fun**2)),
        method="two_stage",
        delta=None,
        n_starts=1,
    )


@_single_threaded_blas
def bootstrap_fit(
    fit: FitResult,
    n_boot: int = 100,
    *,
    seed: int = 0,
    grid_size: int = 6,
    n_refine: int = 1,
) -> BootstrapResult:
    """Residual bootstrap of a one-dimensional fit, in log space.

    Each replicate adds resampled log residuals of the fit to its log
    predictions and refits (same law and loss), starting from the original
    optimum and from the best cells of a coarse grid. The result is stored on
    ``fit.bootstrap`` and returned.

    Parameters
    ----------
    fit : FitResult
        A multi-start fit (two-stage fits are bootstrapped with the multi-start
        fitter and least squares, the same objective as their stage 2; forecast
        fits with the multi-start fitter and their Huber ``delta``, without
        tail weights or prior: the bootstrap measures the noise around the
        curve, :func:`form_risk` the error of extrapolating it).
    n_boot : int, default=100
        Number of replicates.
    seed : int, default=0
        Seed of the resampling.
    grid_size : int, default=6
        Grid size of the starts for each replicate.
    n_refine : int, default=1
        Grid cells refined per replicate (besides the original optimum).

    Returns
    -------
    BootstrapResult
    """
    law_name = fit.law.name
    law_class, log_predict, make_grid, bounds = _law_setup(law_name)
    log_size = _log_size(fit.sizes)
    fitted_log, _ = log_predict(fit.law.theta, log_size)
    residuals = np.log(fit.errors) - fitted_log
    residuals = residuals - residuals.mean()
    rng = np.random.default_rng(seed)
    thetas = []
    for _ in range(n_boot):
        log_observed = fitted_log + rng.choice(residuals, size=residuals.size, replace=True)
        grid_starts = _best_grid_starts(make_grid, log_size, log_observed, fit.delta, grid_size, n_refine)
        starts = np.vstack([fit.law.theta, grid_starts])
        results = [_refine(theta0, log_predict, (log_size,), log_observed, fit.delta, bounds) for theta0 in starts]
        thetas.append(min(results, key=lambda result: result.fun).x)
    thetas = np.array(thetas)
    fit.bootstrap = BootstrapResult(thetas=thetas, laws=[law_class.from_theta(theta) for theta in thetas])
    return fit.bootstrap


@dataclass
class ChinchillaFit:
    """A fitted Chinchilla law.

    Attributes
    ----------
    law : ChinchillaLaw
    objective : float
        Summed Huber loss at the optimum.
    n_starts : int
        Number of L-BFGS-B runs.
    n_converged : int
        How many of them reported convergence.
    """

    law: ChinchillaLaw
    objective: float
    n_starts: int
    n_converged: int


def epoch_init_grid() -> np.ndarray:
    """Epoch AI's 4,500 starting points ``(e, a, b, alpha, beta)``."""
    alphas = betas = np.arange(0.0, 2.5, 0.5)
    es = np.arange(-1.0, 1.5, 0.5)
    scales = np.arange(0.0, 30.0, 5.0)
    return np.array([(e, a, b, alpha, beta) for alpha, beta, e, a, b in product(alphas, betas, es, scales, scales)])


@_single_threaded_blas
def fit_chinchilla(
    n_params: np.ndarray,
    tokens: np.ndarray,
    losses: np.ndarray,
    *,
    delta: float = EPOCH_DELTA,
    starts: np.ndarray | None = None,
    n_polish: int = 10,
) -> ChinchillaFit:
    """Fit ``L(N, D) = E + A/N^alpha + B/D^beta`` following Epoch AI's replication.

    Huber loss (``delta``) on ``log L`` with the log-sum-exp parameterisation,
    L-BFGS-B with analytical gradients from every start; the lowest objective
    among runs that report convergence wins (as in Epoch's notebook).

    Parameters
    ----------
    n_params, tokens, losses : array-like of shape (n,)
        Model sizes, training tokens and final losses.
    delta : float, default=1e-3
        Huber switch point.
    starts : ndarray of shape (k, 5), optional
        Starting ``(e, a, b, alpha, beta)`` rows; Epoch's 4,500-point grid by default.
    n_polish : int, default=10
        How many of the best converged runs are refined again with tight tolerances.

    Returns
    -------
    ChinchillaFit
    """
    n_params, tokens, losses = (np.asarray(values, dtype=float).ravel() for values in (n_params, tokens, losses))
    if not n_params.size == tokens.size == losses.size:
        raise ValueError("n_params, tokens and losses must have the same length")
    if np.any(n_params <= 0) or np.any(tokens <= 0) or np.any(losses <= 0):
        raise ValueError("n_params, tokens and losses must be positive")
    starts = epoch_init_grid() if starts is None else np.atleast_2d(starts)
    inputs = (np.log(n_params), np.log(tokens))
    log_observed = np.log(losses)
    runs = [_refine(theta0, chinchilla_log_predict, inputs, log_observed, delta, None, {}) for theta0 in starts]
    converged = [run for run in runs if run.success]
    if not converged:
        raise RuntimeError("no L-BFGS-B run converged")
    # Scipy's default tolerances (as in Epoch's notebook) for the grid, then the best few are polished.
    best_runs = sorted(converged, key=lambda run: run.fun)[:n_polish]
    polished = [_refine(run.x, chinchilla_log_predict, inputs, log_observed, delta, None) for run in best_runs]
    best = min(polished + best_runs, key=lambda run: run.fun)
    return ChinchillaFit(
        law=ChinchillaLaw.from_theta(best.x),
        objective=float(best.fun),
        n_starts=len(starts),
        n_converged=len(converged),
    )
