"""Fitting scaling laws in log space.

All fitters minimise a Huber loss on log residuals, ``sum huber_delta(log L_hat - log L)``
(``delta=None`` gives least squares), with scipy's L-BFGS-B and the analytical
gradients from :mod:`synthllm.scaling.laws`, from many starting points:

- rectified and vanilla laws: the starting points come from a grid over the
  nonlinear parameters (``beta`` and, for the rectified law, the position of the
  bend ``-b/beta``). For each grid cell the linear parameters (``E`` and the
  scale) have a closed-form relative-least-squares solution, so the whole grid is
  scored in one vectorised pass and only its best cells are refined.
- Chinchilla law: Epoch AI's grid of 4,500 starts (alpha, beta in 0..2 step 0.5,
  e in -1..1 step 0.5, a, b in 0..25 step 5), each refined with L-BFGS-B,
  keeping the best converged run (Besiroglu et al., 2024).
- ``method="two_stage"``: Lin et al.'s (2024) procedure, reproduced from their
  public ``fit_law.py``: a surrogate fit with one auxiliary variable per point,
  then a refit of ``A`` and ``E`` with ``beta`` and ``B'`` fixed, from a
  deterministic start; only fits with ``A > E`` are accepted.

Parameter uncertainty comes from a residual bootstrap in log space
(:func:`bootstrap_fit`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from itertools import product
from typing import Literal

import numpy as np
from scipy.optimize import minimize
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
    "bootstrap_fit",
    "fit_chinchilla",
    "fit_law",
    "huber",
    "rmsd_log",
]

LawName = Literal["rectified", "vanilla"]
FitMethod = Literal["multistart", "two_stage"]
#: Huber switch point for one-dimensional fits: lowest extrapolation error on Lin et al.'s curves.
DEFAULT_DELTA = 1e-2
#: Epoch AI's switch point for the Chinchilla fit.
EPOCH_DELTA = 1e-3
_BETA_BOUNDS = (1e-4, 10.0)


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
        Number of L-BFGS-B refinements run.
    bootstrap : BootstrapResult or None
        Filled by :func:`bootstrap_fit`.
    """

    law: RectifiedLaw | VanillaLaw
    sizes: np.ndarray
    errors: np.ndarray
    objective: float
    method: str
    delta: float | None
    n_starts: int
    bootstrap: BootstrapResult | None = field(default=None, repr=False)

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
    method : {"multistart", "two_stage"}, default="multistart"
        ``"multistart"``: Huber loss on log error, L-BFGS-B from the best
        ``n_refine`` cells of a vectorised start grid. ``"two_stage"``: Lin et
        al.'s procedure (rectified law only).
    delta : float or None, default=1e-2
        Huber switch point on log residuals; ``None`` for least squares.
    grid_size : int, default=16
        Grid points per nonlinear parameter.
    n_refine : int, default=4
        How many of the best grid cells are refined with L-BFGS-B.

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        On fewer than 3 points, non-positive errors or invalid sizes.
    """
    sizes, errors = _validate_curve(sizes, errors, law)
    if method == "two_stage":
        if law != "rectified":
            raise ValueError("the two-stage procedure is defined for the rectified law only")
        return _fit_two_stage(sizes, errors)
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
    )


def _fit_two_stage(sizes: np.ndarray, errors: np.ndarray) -> FitResult:
    """Lin et al.'s two-stage rectified-law fit (reproduced from their ``fit_law.py``).

    Stage 1 fits ``(A, B', beta, E)`` together with one surrogate ``Z_i`` per
    point (``Z_i**2`` stands in for ``exp(beta*x_i + B')``), minimising the mean
    squared log-error of ``(A + |E| Z^2)/(1 + Z^2)`` plus the mean squared
    mismatch ``log Z^2 - beta*x - B'``. Stage 2 keeps ``beta`` and ``B'`` and
    refits ``A`` and ``E`` by least squares on log error. As in the original,
    D = 0 enters as ``log(1e-10)`` and the optimiser is scipy's default (BFGS
    with numerical gradients).
    """
    log_x = np.log(np.where(sizes > 0, sizes, 1e-10))
    log_y = np.log(errors)
    n_points = log_x.size
    # Lin et al.'s deterministic start: A = max L, B' = 0, beta = 1, E = geometric mean of max and min L, Z = 1.
    start_levels = [np.exp(log_y.max()), 0.0, 1.0, np.exp((log_y.max() + log_y.min()) / 2)]
    initial = np.concatenate([start_levels, np.ones(n_points)])

    def surrogate_loss(params):
        start, offset, beta, floor = params[:4]
        z_squared = params[4:] ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            y_loss = np.mean((np.log(start + np.abs(floor) * z_squared) - np.log1p(z_squared) - log_y) ** 2)
            x_loss = np.mean((np.log(z_squared) - beta * log_x - offset) ** 2)
        total = x_loss + y_loss
        return total if np.isfinite(total) else 1e10

    stage1 = minimize(surrogate_loss, initial)
    start, offset, beta, floor = stage1.x[:4]

    def transform(level_params):
        level_start, level_floor = level_params
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log((level_start - abs(level_floor)) / (1 + np.exp(beta * log_x + offset)) + abs(level_floor))

    def level_loss(level_params):
        value = np.mean((transform(level_params) - log_y) ** 2)
        return value if np.isfinite(value) else 1e10

    stage2 = minimize(level_loss, [start, floor])
    start, floor = stage2.x
    floor = abs(floor)
    if not start > floor:
        raise RuntimeError("two-stage fit rejected: it ended with A <= E (Lin et al. accept only A > E)")
    theta = np.array([np.log(floor), np.log(start - floor), offset, beta])
    return FitResult(
        law=RectifiedLaw.from_theta(theta),
        sizes=sizes,
        errors=errors,
        objective=float(stage2.fun),
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
        fitter and least squares, the same objective as their stage 2).
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
