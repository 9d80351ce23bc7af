"""The Gaussian-mixture study: exact densities, and the direction of the trends."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from synthllm.analysis.cli import app
from synthllm.analysis.gmm import Mixture, gmm_study, kl_exact


def test_mixture_log_density_matches_sklearn_score_samples():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    points = np.vstack([rng.normal(size=(100, 2)), rng.normal(loc=4.0, size=(100, 2))])
    fitted = GaussianMixture(3, random_state=0).fit(points)
    assert Mixture.from_fitted(fitted).log_density(points) == pytest.approx(fitted.score_samples(points), abs=1e-10)


def test_exact_kl_matches_closed_form_for_single_gaussians():
    p = Mixture([1.0], [[0.0, 0.0]], [np.eye(2)])
    q = Mixture([1.0], [[1.0, 0.0]], [2.0 * np.eye(2)])
    # KL(N(0, I) || N(m, 2I)) in 2-D = 0.5 * (tr + m²/2 - 2 + 2 log 2).
    closed_form = 0.5 * (1.0 + 0.5 - 2.0 + 2.0 * np.log(2.0))
    assert kl_exact(p, q, 200_000, np.random.default_rng(1)) == pytest.approx(closed_form, abs=0.01)


@pytest.fixture(scope="module")
def small_study():
    return gmm_study(rounds=4, seed=0, values=(2, 12), repeats=3, params="JL")


def test_gap_grows_with_relevant_and_shrinks_with_irrelevant_components(small_study):
    for estimator in ("exact", "reference"):
        relevant = small_study["sweeps"]["J"][estimator]["mean"]
        irrelevant = small_study["sweeps"]["L"][estimator]["mean"]
        assert relevant[1] > relevant[0], estimator
        assert irrelevant[1] < irrelevant[0], estimator


def test_noise_of_both_estimators_is_reported(small_study):
    noise = small_study["noise"]
    assert set(noise) == {"exact", "histogram"}
    for entry in noise.values():
        assert entry["median"] > 0 and entry["rms"] >= entry["median"] * 0.5
    # The exact estimator is unbiased: its error against the reference is mostly noise.
    assert noise["exact"]["error_median_abs"] < noise["histogram"]["error_median_abs"]


def test_cli_gmm_writes_json_and_png(tmp_path):
    result = CliRunner().invoke(app, ["gmm", "--rounds", "2", "--repeats", "2", "--max-value", "3",
                                      "--n-eval", "200", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    study = json.loads((tmp_path / "gmm.json").read_text())
    assert study["sweeps"]["K"]["exact"]["values"] == [2, 3]
    assert (tmp_path / "gmm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_round_values_are_kept_and_reproduce_the_summary(small_study):
    """gmm.json keeps every round (and every repeat), so spreads and correlations can be recomputed."""
    from synthllm.analysis.gmm import round_summary

    rounds = small_study["settings"]["rounds"]
    repeats = small_study["settings"]["repeats"]
    for sweep in small_study["sweeps"].values():
        for name, data in sweep.items():
            assert len(data["rounds"]) == len(data["values"])
            for index, per_round in enumerate(data["rounds"]):
                assert len(per_round) == rounds
                assert round_summary(per_round) == pytest.approx((data["mean"][index], data["sem"][index]), abs=1e-15)
                if name != "reference":
                    estimates = np.asarray(data["estimates"][index])
                    assert estimates.shape == (rounds, repeats)
                    assert estimates.mean(axis=1) == pytest.approx(per_round, abs=1e-12)
    # Round r of each estimator is the same setup: the exact estimator tracks the reference round by round.
    exact = np.concatenate(small_study["sweeps"]["J"]["exact"]["rounds"])
    reference = np.concatenate(small_study["sweeps"]["J"]["reference"]["rounds"])
    assert np.corrcoef(exact, reference)[0, 1] > 0.9


def test_cli_gmm_json_has_per_round_values(tmp_path):
    result = CliRunner().invoke(app, ["gmm", "--rounds", "2", "--repeats", "2", "--max-value", "3",
                                      "--n-eval", "200", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    exact = json.loads((tmp_path / "gmm.json").read_text())["sweeps"]["L"]["exact"]
    assert len(exact["rounds"]) == 2 and all(len(per_round) == 2 for per_round in exact["rounds"])
    assert np.asarray(exact["estimates"]).shape == (2, 2, 2)
