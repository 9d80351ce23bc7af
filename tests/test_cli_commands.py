"""The command line: one-line errors, config listing, stage sub-commands."""

import json

from typer.testing import CliRunner

from synthllm.cli import app, describe_config

runner = CliRunner()


def one_line_error(result):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_missing_config_file(tmp_path):
    line = one_line_error(runner.invoke(app, ["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")]))
    assert "nope.yaml: config file not found" in line


def test_bad_config_field(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("answers:\n  samples: 0\n")
    line = one_line_error(runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "r")]))
    assert f"{config}: answers.samples:" in line


def test_missing_corpus(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("input:\n  path: missing.jsonl\n")
    line = one_line_error(runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "r")]))
    assert "missing.jsonl: input not found" in line


def test_stage_command_without_config_in_folder(tmp_path):
    line = one_line_error(runner.invoke(app, ["concepts", "--out", str(tmp_path / "empty")]))
    assert "no config.yaml in the run folder" in line


def test_documents_command_reports_bad_lines_and_counts_them(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "x" * 80}) + "\n{oops\n" + json.dumps({"id": "b", "text": "y" * 80}) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(f"input:\n  path: {corpus}\n")
    result = runner.invoke(app, ["documents", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert f"{corpus}:2: not valid JSON" in result.output
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["stages"]["documents"]["out"] == 2 and manifest["stages"]["documents"]["skipped"] == 1
    assert (tmp_path / "r" / "config.yaml").exists()


def test_config_schema_lists_every_field():
    result = runner.invoke(app, ["config-schema"])
    assert result.exit_code == 0
    assert "level3.epochs = 5  # Walk epochs" in result.output
    assert len(result.output.splitlines()) == len(describe_config()) > 40
