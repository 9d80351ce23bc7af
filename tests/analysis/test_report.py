"""The run report on a run folder written by the real pipeline: report.json holds every figure,
report.html is self-contained, escapes what it shows and renders."""

import copy
import json
import re
import shutil
import subprocess
import tempfile

import pytest
from typer.testing import CliRunner

from scripted_run import DUPLICATED, LEAK_BENCHMARK, SAMPLE
from synthllm.analysis.cli import app
from synthllm.analysis.report import load_dataset, load_documents, render_html, sample_browser
from synthllm.store import RunStore


def manifest_of(run_folder):
    return json.loads((run_folder / "manifest.json").read_text())


def test_report_json_counts_and_sections(report_no_lm, run_folder):
    _, out = report_no_lm
    manifest = manifest_of(run_folder)
    saved = json.loads((out / "report.json").read_text())
    assert saved["counts"]["dataset_rows"] == manifest["dataset_rows"] > 0
    assert saved["counts"]["by_level"] == manifest["dataset_by_level"]
    assert set(manifest["dataset_by_level"]) == {"1", "2", "3"}
    assert saved["counts"]["documents"] == 10 + DUPLICATED
    assert saved["counts"]["stages"]["dedup"]["out"] == manifest["stages"]["dedup"]["out"]
    assert saved["coverage"] == json.loads((run_folder / "graph" / "coverage.json").read_text())
    assert saved["entropy"] == {"skipped": "--no-lm"}
    level1 = saved["diversity"]["levels"]["1"]
    n1 = manifest["dataset_by_level"]["1"]
    assert level1["n_questions"] == n1 and saved["lengths"]["levels"]["1"]["question"]["n"] == n1
    # The scripted model asks two Level-1 questions per document: same-document pairs exist.
    assert level1["within_source"]["n_pairs"] >= 5
    assert 1.0 < level1["vendi"] <= n1


def test_curation_section_reads_the_removed_rows(report_no_lm, run_folder):
    """Regression (issue 12, bug 1): by_level was {"None": n}, examples blank and raw_vs_curated skipped."""
    report, _ = report_no_lm
    manifest = manifest_of(run_folder)
    dedup, decontam = report["quality"]["dedup"], report["quality"]["decontam"]
    removed_dups = manifest["stages"]["dedup"]["removed"]
    assert removed_dups >= 2 * DUPLICATED  # the copied documents' questions
    assert dedup["removed"] == removed_dups
    assert set(dedup["by_level"]) <= {"1", "2", "3"} and sum(dedup["by_level"].values()) == removed_dups
    assert dedup["by_kind"] and "None" not in dedup["by_kind"]
    store = RunStore(run_folder)
    answered = {r["id"]: r for r in store.iter_records("answers")}
    assert dedup["by_kind"].get("exact", 0) >= 2 * DUPLICATED  # the copied documents' questions
    for example in dedup["examples"]:
        assert example["question"] and example["level"] in (1, 2, 3)
        original = answered[example["duplicate_of"]]
        if example["kind"] == "exact":  # copies of a document
            assert original["question"] == answered[example["id"]]["question"]
        else:  # the scripted model's templated questions: near duplicates under the character-shingle rule
            assert example["similarity"] >= 0.7 and original["level"] == example["level"]
    assert decontam["removed"] == manifest["stages"]["decontam"]["removed"] == 1
    assert decontam["by_benchmark"] == {LEAK_BENCHMARK: 1}
    assert decontam["benchmarks"] == [LEAK_BENCHMARK]
    (leak,) = decontam["examples"]
    assert leak["level"] == 1 and leak["field"] == "question"
    assert leak["question"].startswith("Explain, with an example") and leak["matched_text"]
    # The removed rows carry question and answer, so the curation divergence is estimated.
    curation = report["divergence"]["raw_vs_curated"]
    assert "skipped" not in curation
    removed = removed_dups + 1
    assert curation["removed_share"] == pytest.approx(removed / (removed + manifest["dataset_rows"]))
    assert curation["tv"] <= curation["removed_share"] + 1e-12


def test_curation_examples_are_in_the_page(report_no_lm):
    report, out = report_no_lm
    page = (out / "report.html").read_text()
    leak = report["quality"]["decontam"]["examples"][0]
    assert leak["question"] in page
    assert report["quality"]["dedup"]["examples"][0]["duplicate_of"] in page


def test_divergence_terms_in_report(report_no_lm):
    report, _ = report_no_lm
    anchor = report["divergence"]["anchor_vs_generated"]
    # Textbook sections against short question-answer pairs: the classifier separates them.
    assert anchor["classifier"]["tv"] > 0.5


def test_sample_browser_shows_rows_with_their_source_documents(report_no_lm, run_folder):
    report, out = report_no_lm
    titles = {}
    with open(SAMPLE, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            titles[record["id"]] = record["title"]
    browser = report["samples"]
    assert browser["per_level"] == 8
    page = (out / "report.html").read_text()
    by_level = manifest_of(run_folder)["dataset_by_level"]
    for level, entry in browser["levels"].items():
        assert entry["n"] == by_level[level]
        assert len(entry["rows"]) == min(8, by_level[level])
        for row in entry["rows"]:
            assert set(row) >= {"question", "answer", "final_answer", "agreement", "concepts", "walk", "sources"}
            assert row["sources"] and all(source["found"] for source in row["sources"])
            for source in row["sources"]:
                if source["id"] in titles:
                    assert source["title"] == titles[source["id"]]
                assert source["first_lines"] and source["first_lines"][0] != source["title"]
            if level == "3":
                assert row["walk"] and len(row["sources"]) == 2
    shown = browser["levels"]["3"]["rows"][0]
    assert " → ".join(shown["walk"]) in page
    assert shown["sources"][0]["title"] in page


def test_sample_browser_is_seeded(run_folder):
    rows, documents = load_dataset(run_folder), load_documents(run_folder)
    def ids(browser):
        return [r["id"] for e in browser["levels"].values() for r in e["rows"]]

    first = sample_browser(rows, documents, per_level=3, seed=1)
    assert ids(first) == ids(sample_browser(rows, documents, per_level=3, seed=1))
    assert ids(first) != ids(sample_browser(rows, documents, per_level=3, seed=2))


def test_page_escapes_generated_text(report_no_lm):
    report, _ = report_no_lm
    hostile = copy.deepcopy(report)
    row = hostile["samples"]["levels"]["1"]["rows"][0]
    row["question"] = "What is <script>alert(1)</script> & x<y?"
    row["sources"][0]["first_lines"] = ["<img src=x onerror=alert(2)>"]
    page = render_html(hostile)
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; x&lt;y?" in page


GROUNDING = {
    "embedder": "all-MiniLM-L6-v2", "k": 5, "n_documents": 12, "chance": 5 / 12,
    "levels": {
        "1": {"share": 0.8125, "n": 16, "worst": [{"id": "q-w1", "question": "Which <b>term</b> is worst?",
                                                    "source_doc_id": "doc-7", "rank": 11}]},
        "2": {"share": 0.75, "n": 12, "worst": []},
        "3": {"share": 0.5, "n": 8, "worst": [{"id": "q-w3", "question": "A walk question far from its references"}]},
    },
}


def test_grounding_section_rendered_only_when_present(report_no_lm):
    report, out = report_no_lm
    assert "<h2>Grounding</h2>" not in (out / "report.html").read_text()
    page = render_html({**report, "grounding": GROUNDING})
    section = page[page.index("<h2>Grounding</h2>"):page.index("<h2>Concept coverage</h2>")]
    assert "0.8125" in section and "0.4167" in section and "all-MiniLM-L6-v2" in section
    assert "Which &lt;b&gt;term&lt;/b&gt; is worst?" in section and ">11<" in section and "doc-7" in section
    assert "A walk question far from its references" in section
    assert "Least grounded Level-2" not in section  # no worst cases, no table


def test_every_figure_has_its_numbers_in_json(report_no_lm):
    _, out = report_no_lm
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
                                      "--max-embed", "16", "--max-divergence", "10", "--browse", "2"])
    assert result.exit_code == 0, result.output
    assert f"{manifest_of(run_folder)['dataset_rows']} samples" in result.output
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["diversity"]["levels"]["1"]["n_embedded"] <= 16
    assert all(len(entry["rows"]) == 2 for entry in saved["samples"]["levels"].values())
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_cli_report_missing_folder_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--no-lm"])
    assert result.exit_code == 2
    assert "run folder not found" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "nope").exists()


def test_cli_report_bad_dataset_line_names_file_and_line(tmp_path):
    (tmp_path / "dataset.jsonl").write_text('{"level": 1, "question": "q", "answer": "a"}\n{oops\n')
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--no-lm"])
    assert result.exit_code == 2
    assert "dataset.jsonl:2: not valid JSON" in result.output


def _broken_copy(run_folder, tmp_path, name, content: bytes):
    broken = tmp_path / "run"
    shutil.copytree(run_folder, broken)
    (broken / name).write_bytes(content)
    return broken


def _one_error_line(result, name):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("content", [b"\x00\xff\xfe garbage \x80", b"{\"stages\": ", b"[1, 2, 3]"],
                         ids=["binary", "truncated", "not-an-object"])
def test_cli_report_garbage_manifest_is_a_one_line_error(run_folder, tmp_path, content):
    broken = _broken_copy(run_folder, tmp_path, "manifest.json", content)
    _one_error_line(CliRunner().invoke(app, ["report", str(broken), "--no-lm"]), "manifest.json")


def test_cli_report_corrupt_parquet_is_a_one_line_error(run_folder, tmp_path):
    good = (run_folder / "dataset.parquet").read_bytes()
    broken = _broken_copy(run_folder, tmp_path, "dataset.parquet", good[: len(good) // 2])
    _one_error_line(CliRunner().invoke(app, ["report", str(broken), "--no-lm"]), "dataset.parquet")
