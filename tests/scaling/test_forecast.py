"""Forecasts: size for a target, plateau point, model comparison, bands."""

import numpy as np
import pytest

from synthllm.scaling import (
    RectifiedLaw,
    VanillaLaw,
    bootstrap_fit,
    compare_models,
    fit_law,
    plateau_point,
    predict_with_band,
    size_for_target,
)

LAW = RectifiedLaw(B=4000.0, D_l=60.0, beta=0.5, E=15.0)


def test_size_for_target_inverts_predict():
    size = size_for_target(LAW, 20.0)
    assert LAW.predict(size) == pytest.approx(20.0, rel=1e-10)
    vanilla = VanillaLaw(B=40.0, beta=0.3, E=2.0)
    assert vanilla.predict(size_for_target(vanilla, 3.0)) == pytest.approx(3.0, rel=1e-10)


def test_size_for_target_edge_cases():
    assert size_for_target(LAW, 15.0) == np.inf  # at the irreducible error
    assert size_for_target(LAW, LAW.error_at_zero + 1.0) == 0.0  # met before any data


def test_plateau_gain_per_doubling_equals_threshold():
    plateau = plateau_point(LAW, threshold=0.5)
    gain = LAW.predict(plateau.size) - LAW.predict(2 * plateau.size)
    assert gain == pytest.approx(0.5, rel=1e-6)
    # Past the plateau the gains keep shrinking; before it they were larger.
    assert LAW.predict(4 * plateau.size) - LAW.predict(8 * plateau.size) < 0.5
    assert LAW.predict(plateau.size / 4) - LAW.predict(plateau.size / 2) > 0.5
    assert plateau_point(LAW, threshold=0.1).size > plateau.size


def test_compare_models_picks_the_cheaper_route():
    slow_start = RectifiedLaw(B=4000.0, D_l=60.0, beta=0.5, E=15.0)
    low_floor = RectifiedLaw(B=4000.0, D_l=60.0, beta=0.5, E=10.0)
    result = compare_models({"a": slow_start, "b": low_floor}, target_error=16.0)
    assert result.best == "b" and result.sizes["b"] < result.sizes["a"]
    assert compare_models({"a": slow_start}, target_error=5.0).best is None


def test_predict_with_band_without_and_with_bootstrap():
    sizes = np.array([200.0 * 2**k for k in range(10)])
    fit = fit_law(sizes, LAW.predict(sizes) * np.exp(0.01 * np.sin(np.arange(10))))
    plain = predict_with_band(fit, [1e6])
    assert set(plain) == {"size", "error"}
    bootstrap_fit(fit, n_boot=20)
    banded = predict_with_band(fit, [1e6])
    assert banded["low"][0] <= banded["error"][0] <= banded["high"][0]
