"""Fitters against synthetic curves and the published reference fits."""

import numpy as np
import pytest

from synthllm.scaling import (
    EPOCH_CHINCHILLA_FIT,
    SYNTHLLM_TABLE1_ACCURACY,
    SYNTHLLM_TABLE1_TOKENS,
    RectifiedLaw,
    bootstrap_fit,
    epoch_init_grid,
    fit_chinchilla,
    fit_law,
    form_risk,
    huber,
    load_chinchilla_epoch,
    load_lin_curves,
    load_lin_paper_rmsd,
    plateau_point,
    predict_with_band,
    rmsd_log,
    size_for_target,
)

# A spread of curves from every benchmark (model index in the file); the full 90 run in bench/bench_scaling.py.
LIN_SUBSET = {"flan": [0, 7, 15, 23], "gigaword": [2, 11, 19, 28], "wmt19": [4, 13, 21, 29]}


def test_huber_is_quadratic_inside_and_linear_outside():
    loss, derivative = huber(np.array([-0.5, 0.0005, 2.0]), 1e-3)
    np.testing.assert_allclose(loss, [1e-3 * (0.5 - 5e-4), 0.5 * 0.0005**2, 1e-3 * (2.0 - 5e-4)])
    np.testing.assert_allclose(derivative, [-1e-3, 0.0005, 1e-3])
    squared, slope = huber(np.array([3.0]), None)
    assert squared[0] == 4.5 and slope[0] == 3.0


def test_recovers_synthetic_rectified_law():
    truth = RectifiedLaw(B=500.0, D_l=120.0, beta=0.45, E=1.1)
    sizes = np.array([0.0] + [200.0 * 2**k for k in range(12)])
    fit = fit_law(sizes, truth.predict(sizes), delta=None)
    assert fit.rmsd_log < 1e-6
    assert fit.law.beta == pytest.approx(truth.beta, rel=1e-3)
    assert fit.law.E == pytest.approx(truth.E, rel=1e-3)


def test_vanilla_law_cannot_fit_a_bent_curve():
    truth = RectifiedLaw(B=5000.0, D_l=2000.0, beta=0.7, E=0.8)
    sizes = np.array([200.0 * 2**k for k in range(12)])
    errors = truth.predict(sizes)
    assert fit_law(sizes, errors, "vanilla").rmsd_log > 10 * fit_law(sizes, errors, "rectified").rmsd_log


def test_rejects_invalid_curves():
    with pytest.raises(ValueError, match="at least 3"):
        fit_law([1.0, 2.0], [1.0, 0.5])
    with pytest.raises(ValueError, match="positive"):
        fit_law([1.0, 2.0, 3.0], [1.0, 0.0, 0.5])
    with pytest.raises(ValueError, match="rectified law only"):
        fit_law([0.0, 2.0, 3.0], [1.0, 0.8, 0.5], "vanilla")


def test_in_sample_rmsd_beats_lin_et_al_on_a_subset(scaling_data):
    """Least squares in log space (the objective of Lin et al.'s stage 2) over the full 4-parameter law."""
    paper = load_lin_paper_rmsd(scaling_data)
    ours, theirs = [], []
    for dataset, indices in LIN_SUBSET.items():
        sizes, curves = load_lin_curves(scaling_data, dataset)
        names = list(curves)
        for index in indices:
            losses = curves[names[index]]
            fit = fit_law(sizes[1:], losses[1:], delta=None)
            ours.append(fit.rmsd_log)
            theirs.append(paper[(dataset, names[index])])
    ours, theirs = np.array(ours), np.array(theirs)
    assert np.all(ours <= theirs + 1e-9)
    assert ours.mean() < theirs.mean()


def test_two_stage_reproduces_lin_et_al(scaling_data):
    paper = load_lin_paper_rmsd(scaling_data)
    sizes, curves = load_lin_curves(scaling_data, "flan")
    name, losses = next(iter(curves.items()))
    fit = fit_law(sizes[1:], losses[1:], method="two_stage")
    assert fit.method == "two_stage"
    assert fit.law.E < fit.law.error_at_zero  # Lin et al. accept only A > E
    assert fit.rmsd_log == pytest.approx(paper[("flan", name)], abs=1e-3)


def test_chinchilla_reproduces_epoch(scaling_data):
    """Epoch's procedure on a thinned start grid (every 30th of the 4,500 starts; the bench runs them all)."""
    n_params, tokens, loss = load_chinchilla_epoch(scaling_data)
    fit = fit_chinchilla(n_params, tokens, loss, starts=epoch_init_grid()[::30])
    law = fit.law
    for name in ("E", "alpha", "beta"):
        assert getattr(law, name) == pytest.approx(EPOCH_CHINCHILLA_FIT[name], abs=0.005)
    for name in ("A", "B"):
        assert getattr(law, name) == pytest.approx(EPOCH_CHINCHILLA_FIT[name], rel=0.05)


@pytest.fixture(scope="module")
def table1_fits():
    return {
        model: fit_law(SYNTHLLM_TABLE1_TOKENS, 100.0 - accuracy, delta=1e-2)
        for model, accuracy in SYNTHLLM_TABLE1_ACCURACY.items()
    }


def test_table1_is_reproduced_within_a_tenth_of_a_point(table1_fits):
    for model, fit in table1_fits.items():
        predicted_accuracy = 100.0 - fit.predict(SYNTHLLM_TABLE1_TOKENS)
        assert np.max(np.abs(predicted_accuracy - SYNTHLLM_TABLE1_ACCURACY[model])) < 0.1
    # The paper: 3B and 8B share the data exponent.
    betas = [fit.law.beta for fit in table1_fits.values()]
    assert abs(betas[0] - betas[1]) < 0.05


def test_table1_forecasts_match_the_papers_statements(table1_fits):
    small, large = table1_fits["Llama-3.2-3B"].law, table1_fits["Llama-3.1-8B"].law
    # "Gains flatten near 300B tokens": a doubling beyond ~300B buys about one point or less.
    for law in (small, large):
        plateau = plateau_point(law, threshold=1.0)
        assert 100e9 <= plateau.size <= 1e12
    assert plateau_point(large, 1.0).size < plateau_point(small, 1.0).size
    # "8B approaches its best at ~1T tokens, 3B at ~4T": within 1.25 points of the asymptote 100 - E.
    assert 0.5e12 <= size_for_target(large, large.E + 1.25) <= 2e12
    assert 2e12 <= size_for_target(small, small.E + 1.25) <= 8e12


def test_bootstrap_band_brackets_the_fit(table1_fits):
    fit = fit_law(SYNTHLLM_TABLE1_TOKENS[:5], 100.0 - SYNTHLLM_TABLE1_ACCURACY["Llama-3.1-8B"][:5], delta=1e-2)
    result = bootstrap_fit(fit, n_boot=30, seed=1)
    assert result.thetas.shape == (30, 4)
    low, high = result.band(np.array([4e12]))
    assert low[0] <= fit.predict(4e12) <= high[0]
    table = result.param_table()
    assert table["beta"]["low"] <= fit.law.beta <= table["beta"]["high"]
    assert table["beta"]["std"] > 0


def _lin_curve(scaling_data, dataset, model, with_zero=False):
    sizes, curves = load_lin_curves(scaling_data, dataset)
    keep = (sizes <= 204_800) & ((sizes > 0) | with_zero)
    return sizes[keep], curves[model][keep], sizes[sizes > 204_800], curves[model][sizes > 204_800]


@pytest.mark.parametrize("method", ["forecast", "two_stage"])
def test_fitters_are_deterministic(scaling_data, method):
    """Same curve, same numbers: repeated, and from a different start grid (forecast)."""
    sizes, losses, _, _ = _lin_curve(scaling_data, "wmt19", "facebook/opt-1.3b", with_zero=True)
    first, second = fit_law(sizes, losses, method=method), fit_law(sizes, losses, method=method)
    assert first.law == second.law  # bit for bit
    if method == "forecast":
        other_start = fit_law(sizes, losses, method=method, grid_size=11, n_refine=2)
        np.testing.assert_allclose(other_start.law.theta, first.law.theta, rtol=1e-6, atol=1e-8)


def test_forecast_keeps_the_floor_in_range_where_it_collapsed(scaling_data):
    """On mGPT (WMT19) the multi-start fit's E collapsed to ~1e-11; the forecast fit keeps it meaningful."""
    sizes, losses, future, observed = _lin_curve(scaling_data, "wmt19", "ai-forever/mGPT")
    assert fit_law(sizes, losses).law.E < 1e-6  # the collapse this fixes
    fit = fit_law(sizes, losses, method="forecast")
    assert 1e-3 * losses.min() <= fit.law.E <= losses.min()
    assert fit.law.E > 0.1 * losses.min()
    assert rmsd_log(fit.predict(future), observed) < 0.03


def test_forecast_with_the_zero_point_extrapolates_opt_1_3b(scaling_data):
    """opt-1.3b (WMT19): with D = 0 the multi-start floor E ~ 1.0 flattened the forecast (0.17 held out)."""
    sizes, losses, future, observed = _lin_curve(scaling_data, "wmt19", "facebook/opt-1.3b", with_zero=True)
    assert rmsd_log(fit_law(sizes, losses).predict(future), observed) > 0.1
    assert rmsd_log(fit_law(sizes, losses, method="forecast").predict(future), observed) < 0.06


def test_form_risk_band_widens_with_distance_and_covers_a_wrong_form():
    """A curve whose form is not the law's: the band grows with the distance and covers the truth."""
    sizes = np.array([200.0 * 2**k for k in range(11)])
    # Loss that keeps bending down (log-quadratic in log D): no rectified law fits it exactly.
    def truth(size):
        return np.exp(1.0 - 0.02 * np.log(size / 100.0) ** 1.6)

    fit = fit_law(sizes, truth(sizes), method="forecast")
    risk = form_risk(fit)
    assert fit.form_risk is risk and risk.slope > 0
    assert risk.distances.min() >= 1.0 and len(risk.distances) == len(risk.log_errors) == 1 + 2 + 3 + 4
    future = sizes[-1] * np.array([2.0, 4.0, 8.0])
    band = predict_with_band(fit, future)
    widths = np.log(band["high"] / band["low"])
    assert np.all(np.diff(widths) > 0)
    assert np.all((band["low"] <= truth(future)) & (truth(future) <= band["high"]))
    # Inside the data the band is the residual scale only.
    assert risk.log_sd(sizes[3:4])[0] == pytest.approx(risk.residual_sd)


def test_form_risk_of_an_exact_law_is_negligible():
    truth = RectifiedLaw(B=500.0, D_l=120.0, beta=0.45, E=1.1)
    sizes = np.array([200.0 * 2**k for k in range(10)])
    risk = form_risk(fit_law(sizes, truth.predict(sizes), method="forecast", floor_prior=None), prior_slope=0.0)
    assert risk.slope < 1e-3
    with pytest.raises(ValueError, match="more than 4 positive sizes"):
        form_risk(fit_law(sizes[:4], truth.predict(sizes[:4]), method="forecast"))


def test_forecast_fit_still_reproduces_table1():
    for accuracy in SYNTHLLM_TABLE1_ACCURACY.values():
        fit = fit_law(SYNTHLLM_TABLE1_TOKENS, 100.0 - accuracy, method="forecast")
        assert np.max(np.abs(100.0 - fit.predict(SYNTHLLM_TABLE1_TOKENS) - accuracy)) < 0.1
