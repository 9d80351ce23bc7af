"""Smoke tests of ``synthllm quality filter|dedup|decontam`` on small JSONL files."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from synthllm.quality.cli import app

runner = CliRunner()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


QUESTION = "A shop sells 14 red pens and 9 blue pens each day for a week. How many pens does it sell in total?"


def test_dedup_command_writes_kept_and_report(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"id": "q1", "question": QUESTION}, {"id": "q2", "question": QUESTION.upper()},
        {"id": "q3", "question": QUESTION.replace("in total", "altogether in total")},
        {"id": "q4", "question": "Prove that the square root of two is irrational."}])
    result = runner.invoke(app, ["dedup", str(source), str(tmp_path / "out.jsonl"), "--report",
                                 str(tmp_path / "report.json"), "--threshold", "0.7"])
    assert result.exit_code == 0, result.output
    assert "kept 2/4" in result.output
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["q1", "q4"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n_exact"] == 1 and report["n_near"] == 1
    assert {r["id"]: r["duplicate_of"] for r in report["removed"]} == {"q2": "q1", "q3": "q1"}


def test_decontam_command_with_custom_benchmark(tmp_path):
    leaked = ("Two friends share a pizza cut into twelve slices; the first eats a third of it and the second "
              "eats half of what is left. How many slices remain for the dog?")
    bench = write_jsonl(tmp_path / "bench.jsonl", [{"key": "b7", "problem": leaked}])
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "question": QUESTION, "answer": "161"},
                                                 {"id": 2, "question": "Warm-up. " + leaked, "answer": "4"}])
    result = runner.invoke(app, ["decontam", str(source), str(tmp_path / "out.jsonl"), "-r",
                                 str(tmp_path / "report.json"), "--benchmark", f"toy={bench}:problem,id=key"])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [1]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["benchmarks"] == [{"name": "toy", "path": str(bench), "fields": ["problem"], "items": 1}]
    assert report["removed"][0]["benchmark_id"] == "b7" and report["removed"][0]["field"] == "question"


def test_decontam_command_with_shared_benchmarks(tmp_path, shared_data):
    gsm8k_first = read_jsonl(shared_data / "gsm8k" / "test.jsonl")[0]
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "question": QUESTION},
                                                 {"id": "b", "question": gsm8k_first["question"]}])
    result = runner.invoke(app, ["decontam", str(source), str(tmp_path / "out.jsonl"), "-r",
                                 str(tmp_path / "r.json"), "--data-dir", str(shared_data)])
    assert result.exit_code == 0, result.output
    assert "benchmarks: gsm8k, math" in result.output
    removed = json.loads((tmp_path / "r.json").read_text())["removed"]
    assert [(r["id"], r["benchmark"], r["benchmark_id"]) for r in removed] == [("b", "gsm8k", "0")]


def test_bad_inputs_give_one_line_errors(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "question": "ok"}\n{"id": 2, "question": \n')
    result = runner.invoke(app, ["dedup", str(broken), str(tmp_path / "o.jsonl"), "-r", str(tmp_path / "r.json")])
    assert result.exit_code == 2
    assert "broken.jsonl:2: not valid JSON" in result.output and "Traceback" not in result.output
    no_text = write_jsonl(tmp_path / "notext.jsonl", [{"id": 1, "question": "fine"}, {"id": 2}])
    result = runner.invoke(app, ["dedup", str(no_text), str(tmp_path / "o.jsonl"), "-r", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "notext.jsonl:2: record has no 'question' field" in result.output
    result = runner.invoke(app, ["decontam", str(no_text), str(tmp_path / "o.jsonl"), "-r", str(tmp_path / "r.json"),
                                 "--benchmark", "nofields"])
    assert result.exit_code == 2 and "expected name=path:field" in result.output
    result = runner.invoke(app, ["decontam", str(no_text), str(tmp_path / "o.jsonl"), "-r", str(tmp_path / "r.json"),
                                 "--benchmark", f"x={tmp_path / 'absent.jsonl'}:q"])
    assert result.exit_code == 2 and "absent.jsonl: benchmark file of 'x' not found" in result.output
    result = runner.invoke(app, ["filter", str(no_text), str(tmp_path / "o.jsonl"), "-r", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "give --ratings, --positives or both" in result.output


def test_filter_command_with_ratings(tmp_path, shared_data):
    math_docs = [json.loads(line) for line in open(shared_data / "corpus" / "openstax_math.jsonl")][:12]
    other_docs = [json.loads(line) for line in open(shared_data / "corpus" / "nonmath.jsonl")][:12]
    corpus = [{"id": d["id"], "text": d["text"][:400]} for d in math_docs + other_docs]
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus)
    rated = [{"id": d["id"], "rating": 9} for d in math_docs[:8]] + [{"id": d["id"], "rating": 2} for d in other_docs[:8]]
    ratings = write_jsonl(tmp_path / "ratings.jsonl", rated)
    result = runner.invoke(app, ["filter", str(source), str(tmp_path / "kept.jsonl"), "-r", str(tmp_path / "r.json"),
                                 "--ratings", str(ratings)])
    assert result.exit_code == 0, result.output
    kept_ids = {d["id"] for d in read_jsonl(tmp_path / "kept.jsonl")}
    math_ids = {d["id"] for d in math_docs}
    assert kept_ids <= math_ids and {d["id"] for d in math_docs[:8]} <= kept_ids and len(kept_ids) >= 10
    assert all(d["domain_score"] > 6.5 for d in read_jsonl(tmp_path / "kept.jsonl"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_kept"] == len(kept_ids) and report["n_rated"] == 16
    assert {d["id"] for d in report["dropped"]} == {d["id"] for d in corpus} - kept_ids
    assert set(report["scorer_cv"]) >= {"mae", "rmse", "spearman"}
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"id": "nope", "rating": 5}])
    result = runner.invoke(app, ["filter", str(source), str(tmp_path / "kept.jsonl"), "-r", str(tmp_path / "r.json"),
                                 "--ratings", str(unknown)])
    assert result.exit_code == 2 and "1 rated ids are not in" in result.output
