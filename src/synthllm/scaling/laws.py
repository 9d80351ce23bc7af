"""Scaling-law forms: rectified, vanilla and Chinchilla.

Each law is a small frozen dataclass holding its interpretable parameters and a
``predict`` method. Fitting happens in log space on an unconstrained internal
vector ``theta`` (see :mod:`synthllm.scaling.fit`); the functions
``*_log_predict`` map ``theta`` and log data sizes to the predicted log error
and its Jacobian, which the optimiser uses as the analytical gradient.

Internal parameterisations (all exponentials keep the law's parameters
positive, which is why no constraint other than ``beta > 0`` is needed):

- rectified ``theta = (e, c, b, beta)``:
  ``log L = logaddexp(e, c - softplus(beta*log D + b))``, i.e.
  ``E = exp(e)``, ``B/D_l = exp(c)`` (the error at D = 0 minus E),
  ``D_l = exp(-b)``, ``B = exp(c - b)``. This is Lin et al.'s
  ``(A - E)/(1 + exp(beta*log D + B'))`` with ``A - E = exp(c)``, written as a
  log-sum-exp so that it stays finite at D = 0 (``log D = -inf``).
- vanilla ``theta = (e, b, beta)``: ``log L = logaddexp(e, b - beta*log D)``.
- Chinchilla ``theta = (e, a, b, alpha, beta)``:
  ``log L = logsumexp(a - alpha*log N, b - beta*log D, e)`` (Epoch AI's form).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import expit, log_expit

__all__ = [
    "ChinchillaLaw",
    "RectifiedLaw",
    "VanillaLaw",
    "chinchilla_log_predict",
    "rectified_log_predict",
    "vanilla_log_predict",
]


def _safe_log(values: np.ndarray) -> np.ndarray:
    """Natural log that maps 0 to -inf without a warning."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(values, dtype=float))


def _times_log_size(weight: np.ndarray, log_size: np.ndarray) -> np.ndarray:
    """``weight * log_size`` with ``0 * -inf`` taken as 0 (the D = 0 point)."""
    with np.errstate(invalid="ignore"):
        product = weight * log_size
    return np.where(weight == 0.0, 0.0, product)


def rectified_log_predict(theta: np.ndarray, log_size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log error of the rectified law and its Jacobian w.r.t. ``theta``.

    Parameters
    ----------
    theta : ndarray of shape (4,)
        Internal parameters ``(e, c, b, beta)`` (module docstring).
    log_size : ndarray of shape (n,)
        ``log D``; ``-inf`` stands for D = 0.

    Returns
    -------
    log_error : ndarray of shape (n,)
    jacobian : ndarray of shape (n, 4)
    """
    e, c, b, beta = theta
    with np.errstate(invalid="ignore"):
        slope = beta * log_size + b  # -inf at D = 0 when beta > 0
    learned = c + log_expit(-slope)  # c - softplus(slope)
    log_error = np.logaddexp(e, learned)
    weight_floor = np.exp(e - log_error)
    weight_learned = np.exp(learned - log_error)
    d_slope = -weight_learned * expit(slope)
    jacobian = np.column_stack([weight_floor, weight_learned, d_slope, _times_log_size(d_slope, log_size)])
    return log_error, jacobian


def vanilla_log_predict(theta: np.ndarray, log_size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log error of the vanilla law ``B/D^beta + E`` and its Jacobian.

    Parameters
    ----------
    theta : ndarray of shape (3,)
        Internal parameters ``(e, b, beta)``.
    log_size : ndarray of shape (n,)
        ``log D`` (D must be positive).

    Returns
    -------
    log_error : ndarray of shape (n,)
    jacobian : ndarray of shape (n, 3)
    """
    e, b, beta = theta
    power_term = b - beta * log_size
    log_error = np.logaddexp(e, power_term)
    weight_floor = np.exp(e - log_error)
    weight_power = np.exp(power_term - log_error)
    jacobian = np.column_stack([weight_floor, weight_power, -weight_power * log_size])
    return log_error, jacobian


def chinchilla_log_predict(
    theta: np.ndarray, log_params: np.ndarray, log_tokens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log loss of ``E + A/N^alpha + B/D^beta`` and its Jacobian.

    Parameters
    ----------
    theta : ndarray of shape (5,)
        Internal parameters ``(e, a, b, alpha, beta)``.
    log_params : ndarray of shape (n,)
        ``log N`` (model parameters).
    log_tokens : ndarray of shape (n,)
        ``log D`` (training tokens).

    Returns
    -------
    log_loss : ndarray of shape (n,)
    jacobian : ndarray of shape (n, 5)
    """
    e, a, b, alpha, beta = theta
    model_term = a - alpha * log_params
    data_term = b - beta * log_tokens
    # Log-sum-exp by hand (one shift, three exps): this is the inner loop of a 4,500-start fit.
    shift = np.maximum(np.maximum(model_term, data_term), e)
    floor_part = np.exp(e - shift)
    model_part = np.exp(model_term - shift)
    data_part = np.exp(data_term - shift)
    total = floor_part + model_part + data_part
    log_loss = shift + np.log(total)
    weight_model = model_part / total
    weight_data = data_part / total
    jacobian = np.array(
        [floor_part / total, weight_model, weight_data, -weight_model * log_params, -weight_data * log_tokens]
    ).T
    return log_loss, jacobian


@dataclass(frozen=True)
class RectifiedLaw:
    """Rectified scaling law ``L(D) = B / (D_l + D^beta) + E`` (Lin et al., 2024).

    Parameters
    ----------
    B : float
        Scale of the learnable error.
    D_l : float
        Pre-learned data size; ``B / D_l`` is the error at D = 0 minus ``E``.
    beta : float
        Data exponent.
    E : float
        Irreducible error (the asymptote).
    """

    B: float
    D_l: float
    beta: float
    E: float

    name = "rectified"

    def predict(self, size: np.ndarray | float) -> np.ndarray:
        """Predicted error at data sizes ``size`` (0 allowed).

        Parameters
        ----------
        size : array-like
            Training data sizes.

        Returns
        -------
        ndarray
            Predicted error, same shape as ``size``.
        """
        return np.exp(rectified_log_predict(self.theta, _safe_log(np.atleast_1d(size)))[0]).reshape(np.shape(size))

    @property
    def error_at_zero(self) -> float:
        """Error before any fine-tuning data, ``B/D_l + E``."""
        return self.B / self.D_l + self.E

    @property
    def theta(self) -> np.ndarray:
        """Internal parameter vector ``(e, c, b, beta)``."""
        return np.array([np.log(self.E), np.log(self.B / self.D_l), -np.log(self.D_l), self.beta])

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> RectifiedLaw:
        """Build the law from its internal parameter vector.

        Parameters
        ----------
        theta : ndarray of shape (4,)
            ``(e, c, b, beta)``.

        Returns
        -------
        RectifiedLaw
        """
        e, c, b, beta = (float(value) for value in theta)
        return cls(B=float(np.exp(c - b)), D_l=float(np.exp(-b)), beta=beta, E=float(np.exp(e)))

    def params(self) -> dict[str, float]:
        """Interpretable parameters plus the derived error at D = 0."""
        return {**asdict(self), "B/D_l": self.B / self.D_l}


@dataclass(frozen=True)
class VanillaLaw:
    """Vanilla fine-tuning law ``L(D) = B / D^beta + E``.

    Parameters
    ----------
    B : float
        Scale.
    beta : float
        Data exponent.
    E : float
        Irreducible error.
    """

    B: float
    beta: float
    E: float

    name = "vanilla"

    def predict(self, size: np.ndarray | float) -> np.ndarray:
        """Predicted error at positive data sizes ``size``.

        Parameters
        ----------
        size : array-like
            Training data sizes (> 0).

        Returns
        -------
        ndarray
            Predicted error, same shape as ``size``.
        """
        return np.exp(vanilla_log_predict(self.theta, _safe_log(np.atleast_1d(size)))[0]).reshape(np.shape(size))

    @property
    def theta(self) -> np.ndarray:
        """Internal parameter vector ``(e, b, beta)``."""
        return np.array([np.log(self.E), np.log(self.B), self.beta])

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> VanillaLaw:
        """Build the law from ``(e, b, beta)``.

        Parameters
        ----------
        theta : ndarray of shape (3,)

        Returns
        -------
        VanillaLaw
        """
        e, b, beta = (float(value) for value in theta)
        return cls(B=float(np.exp(b)), beta=beta, E=float(np.exp(e)))

    def params(self) -> dict[str, float]:
        """Interpretable parameters."""
        return asdict(self)


@dataclass(frozen=True)
class ChinchillaLaw:
    """Chinchilla law ``L(N, D) = E + A/N^alpha + B/D^beta`` (Hoffmann et al., 2022).

    Parameters
    ----------
    E, A, B : float
        Irreducible loss and the scales of the model-size and data terms.
    alpha, beta : float
        Model-size and data exponents.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    name = "chinchilla"

    def predict(self, n_params: np.ndarray | float, tokens: np.ndarray | float) -> np.ndarray:
        """Predicted loss for models of ``n_params`` parameters trained on ``tokens`` tokens.

        Parameters
        ----------
        n_params, tokens : array-like
            Broadcastable arrays of model sizes and token counts.

        Returns
        -------
        ndarray
            Predicted loss with the broadcast shape.
        """
        n_params, tokens = np.broadcast_arrays(np.asarray(n_params, float), np.asarray(tokens, float))
        log_loss, _ = chinchilla_log_predict(self.theta, np.log(n_params).ravel(), np.log(tokens).ravel())
        return np.exp(log_loss).reshape(n_params.shape)

    @property
    def theta(self) -> np.ndarray:
        """Internal parameter vector ``(e, a, b, alpha, beta)``."""
        return np.array([np.log(self.E), np.log(self.A), np.log(self.B), self.alpha, self.beta])

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> ChinchillaLaw:
        """Build the law from ``(e, a, b, alpha, beta)``.

        Parameters
        ----------
        theta : ndarray of shape (5,)

        Returns
        -------
        ChinchillaLaw
        """
        e, a, b, alpha, beta = (float(value) for value in theta)
        return cls(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta)

    def params(self) -> dict[str, float]:
        """Interpretable parameters."""
        return asdict(self)
