"""The `fit` command: outputs, held-out points, forecasts and one-line errors on bad CSVs."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from synthllm.scaling import SYNTHLLM_TABLE1_ACCURACY, SYNTHLLM_TABLE1_TOKENS
from synthllm.scaling.cli import app

runner = CliRunner()


@pytest.fixture
def table1_csv(tmp_path):
    lines = ["model,tokens,metric"]
    for model, accuracy in SYNTHLLM_TABLE1_ACCURACY.items():
        lines += [f"{model},{tokens:g},{value}" for tokens, value in zip(SYNTHLLM_TABLE1_TOKENS, accuracy)]
    path = tmp_path / "table1.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_writes_table_json_and_plot(table1_csv, tmp_path):
    json_path, plot_path = tmp_path / "fit.json", tmp_path / "fit.png"
    result = runner.invoke(
        app,
        [str(table1_csv), "--metric", "accuracy", "--holdout-last", "1", "--target", "82", "--plateau-threshold", "1",
         "--at", "1e13", "--bootstrap", "20", "--json", str(json_path), "--plot", str(plot_path)],
    )
    assert result.exit_code == 0, result.output
    assert "Llama-3.1-8B" in result.output and "least data: Llama-3.1-8B" in result.output
    document = json.loads(json_path.read_text())
    model = document["models"]["Llama-3.1-8B"]
    assert model["n_fit"] == 5
    assert model["heldout"][0]["size"] == 4e12
    assert abs(model["heldout"][0]["predicted"] - 83.2) < 0.5  # accuracy, converted back from error
    assert model["rmsd_log_heldout"] < 0.05
    assert model["forecast"][0]["low"] <= model["forecast"][0]["predicted"] <= model["forecast"][0]["high"]
    assert set(model["uncertainty"]) >= {"B", "D_l", "beta", "E"}
    assert document["comparison"]["best"] == "Llama-3.1-8B"
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_on_fractions_and_vanilla_law(tmp_path):
    sizes = np.array([1e3, 2e3, 4e3, 8e3, 16e3])
    path = tmp_path / "fractions.csv"
    path.write_text("model,samples,metric\n" + "".join(f"m,{s:g},{1 - 2 * s**-0.3:.6f}\n" for s in sizes))
    result = runner.invoke(app, [str(path), "--metric", "accuracy", "--law", "vanilla", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert "vanilla law, accuracy vs samples" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("model,tokens\nm,1,2\n", "bad.csv:1: header lacks column(s) metric"),
        ("model,tokens,metric\nm,1e9,0.5\nm,abc,0.4\n", "bad.csv:3: tokens 'abc' is not a number"),
        ("model,tokens,metric\nm,1e9,120\n", "bad.csv:2: accuracy 120 outside [0, 100]"),
        ("model,tokens,metric\nm,1e9,40\nm,2e9\n", "bad.csv:3: expected 3 fields, found 2"),
        ("model,tokens,metric\nm,1e9,50\nm,2e9,60\n", "model 'm' has 2 points; fitting needs 3"),
        ("", "bad.csv:1: empty file"),
    ],
)
def test_bad_csv_gives_one_line_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = runner.invoke(app, [str(path), "--metric", "accuracy"])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_file_and_bad_option(tmp_path):
    result = runner.invoke(app, [str(tmp_path / "nope.csv")])
    assert result.exit_code == 2 and "nope.csv: cannot open" in result.output
    path = tmp_path / "ok.csv"
    path.write_text("model,tokens,metric\nm,1,3\nm,2,2\nm,3,1.5\n")
    result = runner.invoke(app, [str(path), "--law", "cubic"])
    assert result.exit_code == 2 and "--law must be" in result.output


def test_fit_reports_forecast_intervals_that_cover_the_heldout_point(table1_csv, tmp_path):
    """Default method 'forecast': the 95% interval includes the error of the law's form (form_risk)."""
    json_path = tmp_path / "fit.json"
    result = runner.invoke(app, [str(table1_csv), "--metric", "accuracy", "--holdout-last", "1", "--bootstrap", "0",
                                 "--at", "1e13", "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    document = json.loads(json_path.read_text())
    assert document["method"] == "forecast"
    for model in document["models"].values():
        assert model["form_risk"]["left_out_predictions"] == 1 and model["form_risk"]["slope_per_doubling"] > 0
        heldout = model["heldout"][0]
        assert heldout["low"] <= heldout["observed"] <= heldout["high"]
        forecast = model["forecast"][0]
        # wider 3.3 doublings out than 2 doublings out
        assert forecast["high"] - forecast["low"] > heldout["high"] - heldout["low"]
