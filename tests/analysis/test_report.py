"""The run report: report.json holds every figure, report.html is self-contained and renders."""

import json
import re
import shutil
import subprocess
import tempfile

import pytest
from typer.testing import CliRunner

from synthllm.analysis.cli import app


def test_report_json_counts_and_sections(report_no_lm):
    report, out = report_no_lm
    saved = json.loads((out / "report.json").read_text())
    assert saved["counts"]["dataset_rows"] == 76
    assert saved["counts"]["by_level"] == {"1": 32, "2": 32, "3": 12}
    assert saved["counts"]["documents"] == 8
    assert saved["counts"]["stages"]["dedup"]["out"] == 80
    assert saved["quality"]["dedup"]["removed"] == 8
    assert saved["quality"]["decontam"]["by_benchmark"] == {"gsm8k": 4}
    assert saved["coverage"]["concepts"]["gini"] == 0.55
    assert saved["entropy"] == {"skipped": "--no-lm"}
    level1 = saved["diversity"]["levels"]["1"]
    # 8 documents × C(4, 2) same-document pairs.
    assert level1["within_source"]["n_pairs"] == 48
    assert 1.0 < level1["vendi"] < 32
    assert saved["diversity"]["levels"]["3"]["within_source"]["n_pairs"] == 4 * 3
    assert saved["lengths"]["levels"]["1"]["question"]["n"] == 32


def test_divergence_terms_in_report(report_no_lm):
    report, _ = report_no_lm
    anchor = report["divergence"]["anchor_vs_generated"]
    # Textbook sections against word problems: the classifier separates them.
    assert anchor["classifier"]["tv"] > 0.5
    curation = report["divergence"]["raw_vs_curated"]
    assert curation["removed_share"] == pytest.approx(12 / (12 + 76))
    assert curation["tv"] <= curation["removed_share"] + 1e-12


def test_every_figure_has_its_numbers_in_json(report_no_lm):
    report, out = report_no_lm
    page = (out / "report.html").read_text()
    saved = json.loads((out / "report.json").read_text())
    for figure in saved["figures"]:
        assert f'alt="{figure["title"]}"' in page
        node = saved
        for key in figure["data"].split(".")[:2]:
            node = node[key]
        assert node, figure["id"]
    # Every number in the diversity table comes from report.json.
    vendi = saved["diversity"]["levels"]["2"]["vendi"]
    assert f"{vendi:.4g}" in page


def test_html_is_self_contained(report_no_lm):
    _, out = report_no_lm
    page = (out / "report.html").read_text()
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", page)
    assert "url(" not in page
    assert page.count("data:image/png;base64,") == 3


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(report_no_lm, tmp_path):
    _, out = report_no_lm
    screenshot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tempfile.mkdtemp()}", f"--screenshot={screenshot}", "--window-size=1280,4000",
         (out / "report.html").resolve().as_uri()],
        check=True, capture_output=True, timeout=120)
    from matplotlib.image import imread

    pixels = imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (4000, 1280)
    # A blank page is one colour; the report has text, tables and plots.
    assert pixels.std() > 0.05
    assert (pixels.mean(axis=2) < 0.5).mean() > 0.005


def test_cli_report_writes_files(run_folder, tmp_path):
    result = CliRunner().invoke(app, ["report", str(run_folder), "--no-lm", "--out", str(tmp_path),
                                      "--max-embed", "16", "--max-divergence", "10"])
    assert result.exit_code == 0, result.output
    assert "76 samples" in result.output
    assert json.loads((tmp_path / "report.json").read_text())["diversity"]["levels"]["1"]["n_embedded"] <= 16
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_cli_report_missing_folder_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--no-lm"])
    assert result.exit_code == 2
    assert "run folder not found" in result.output
    assert "Traceback" not in result.output


def test_cli_report_bad_dataset_line_names_file_and_line(tmp_path):
    (tmp_path / "dataset.jsonl").write_text('{"level": 1, "question": "q", "answer": "a"}\n{oops\n')
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--no-lm"])
    assert result.exit_code == 2
    assert "dataset.jsonl:2: not valid JSON" in result.output
