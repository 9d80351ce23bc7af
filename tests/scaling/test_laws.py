"""The law forms, their internal parameterisation and analytical Jacobians."""

import numpy as np
import pytest

from synthllm.scaling.laws import (
    ChinchillaLaw,
    RectifiedLaw,
    VanillaLaw,
    chinchilla_log_predict,
    rectified_log_predict,
    vanilla_log_predict,
)


def _numeric_jacobian(function, theta, step=1e-6):
    columns = []
    for index in range(theta.size):
        shift = np.zeros_like(theta)
        shift[index] = step
        columns.append((function(theta + shift) - function(theta - shift)) / (2 * step))
    return np.column_stack(columns)


def test_rectified_predict_matches_formula_including_zero():
    law = RectifiedLaw(B=300.0, D_l=50.0, beta=0.6, E=1.2)
    sizes = np.array([0.0, 10.0, 1e3, 1e6])
    expected = law.B / (law.D_l + sizes**law.beta) + law.E
    np.testing.assert_allclose(law.predict(sizes), expected, rtol=1e-12)
    assert law.error_at_zero == pytest.approx(300.0 / 50.0 + 1.2)
    round_trip = RectifiedLaw.from_theta(law.theta)
    assert (round_trip.B, round_trip.D_l, round_trip.beta, round_trip.E) == pytest.approx((300.0, 50.0, 0.6, 1.2))


def test_vanilla_and_chinchilla_predict_match_formulas():
    vanilla = VanillaLaw(B=20.0, beta=0.3, E=0.5)
    sizes = np.array([1.0, 100.0, 1e5])
    np.testing.assert_allclose(vanilla.predict(sizes), 20.0 / sizes**0.3 + 0.5, rtol=1e-12)
    chinchilla = ChinchillaLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)
    n_params, tokens = np.array([1e8, 1e9]), np.array([2e9, 2e10])
    expected = 1.8 + 480.0 / n_params**0.35 + 2100.0 / tokens**0.37
    np.testing.assert_allclose(chinchilla.predict(n_params, tokens), expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("log_predict", "theta", "inputs"),
    [
        (rectified_log_predict, np.array([0.1, 1.5, -3.0, 0.5]), (np.log([1e-300, 200.0, 4e3, 1.6e6]),)),
        (vanilla_log_predict, np.array([-0.5, 2.0, 0.4]), (np.log([200.0, 4e3, 1.6e6]),)),
        (chinchilla_log_predict, np.array([0.6, 6.2, 7.6, 0.35, 0.37]), (np.log([1e8, 5e9]), np.log([2e9, 1e11]))),
    ],
)
def test_analytical_jacobian_matches_finite_differences(log_predict, theta, inputs):
    _, jacobian = log_predict(theta, *inputs)
    numeric = _numeric_jacobian(lambda value: log_predict(value, *inputs)[0], theta)
    np.testing.assert_allclose(jacobian, numeric, rtol=1e-5, atol=1e-8)


def test_rectified_jacobian_is_finite_at_zero_size():
    log_error, jacobian = rectified_log_predict(np.array([0.1, 1.5, -3.0, 0.5]), np.array([-np.inf, 0.0]))
    assert np.all(np.isfinite(log_error)) and np.all(np.isfinite(jacobian))
    # At D = 0 only E and B/D_l matter.
    assert jacobian[0, 2] == 0.0 and jacobian[0, 3] == 0.0
