"""Bad input everywhere: each case runs the real ``synthllm`` command and expects one ``error:`` line.

Every test here failed before the change that added it (a traceback, a silent
U+FFFD, an id written as a Python repr, an empty run that exited 0, ...). The
checks are the same for all: exit status 2, one ``error: ...`` line that names
the file, no traceback. Files are real (a truncated gzip, a full tmpfs, an
I/O error from ``/proc/self/mem``); nothing is mocked.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthllm.cli import app

runner = CliRunner()
#: a file every user, root too, can open but not read: reading offset 0 of /proc/self/mem is EIO
UNREADABLE = Path("/proc/self/mem")
TEXT = "A document long enough to keep, about the sum of the angles of a triangle."


def one_line_error(result, *names: str) -> str:
    """The single ``error:`` line of a failed command; it must name each of ``names``."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.output
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


def config_for(tmp_path: Path, corpus, extra: str = "") -> Path:
    config = tmp_path / "run.yaml"
    config.write_text(f"input:\n  path: {corpus}\n  min_chars: 1\n{extra}", encoding="utf-8")
    return config


def documents(tmp_path: Path, config: Path):
    return runner.invoke(app, ["documents", "--config", str(config), "--out", str(tmp_path / "run")])


def document_counts(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["documents"]


def can_read_unreadable() -> bool:
    if not UNREADABLE.exists():
        return True
    try:
        UNREADABLE.read_bytes()
    except OSError:
        return False
    return True


needs_eio = pytest.mark.skipif(can_read_unreadable(), reason="needs Linux /proc/self/mem (EIO at offset 0)")


# -- config ---------------------------------------------------------------------------------------

def test_binary_config(tmp_path):
    config = tmp_path / "binary.yaml"
    config.write_bytes(bytes(range(256)) * 4)
    line = one_line_error(documents(tmp_path, config), "binary.yaml")
    assert "not UTF-8" in line or "not valid YAML" in line


def test_invalid_utf8_config_names_the_line(tmp_path):
    config = tmp_path / "latin1.yaml"
    config.write_bytes(b"seed: 1\n# caf\xe9\n")
    one_line_error(documents(tmp_path, config), "latin1.yaml:2: not UTF-8 text (byte 0xe9)")


def test_config_with_nul_bytes(tmp_path):
    config = tmp_path / "nul.yaml"
    config.write_bytes(b"seed: 1\n\x00\x01\x02\n")
    one_line_error(documents(tmp_path, config), "nul.yaml:2: not valid YAML")


def test_nan_filter_threshold_is_an_error_not_an_empty_run(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "a", "text": TEXT}) + "\n")
    config = config_for(tmp_path, "c.jsonl", "filter:\n  threshold: .nan\n")
    one_line_error(documents(tmp_path, config), "run.yaml: filter.threshold: Input should be a finite number")
    assert not (tmp_path / "run" / "manifest.json").exists()


@pytest.mark.parametrize("section", [
    "filter:\n  threshold: .inf\n", "dedup:\n  threshold: .nan\n", "level3:\n  novelty: .inf\n",
    "llm:\n  prices: {prompt: .nan, completion: 1.0}\n", "ray:\n  num_cpus_per_worker: .inf\n",
    "answers:\n  temperature: .nan\n", "filter:\n  threshold: 10\n"])
def test_non_finite_or_unreachable_numbers_are_config_errors(tmp_path, section):
    from synthllm.config import ConfigError, load_config

    config = tmp_path / "run.yaml"
    config.write_text(section)
    field = section.split(":")[0] + "." + section.split("\n")[1].split(":")[0].strip()
    if "prices" in section:
        field = "llm.prices.prompt"
    with pytest.raises(ConfigError, match=f"run.yaml: {field}: "):
        load_config(config)


# -- corpus ---------------------------------------------------------------------------------------

def test_parquet_that_is_not_parquet(tmp_path):
    (tmp_path / "corpus.parquet").write_text("id,text\na,hello\n")
    one_line_error(documents(tmp_path, config_for(tmp_path, "corpus.parquet")), "corpus.parquet: not a Parquet file")


def test_jsonl_gz_that_is_not_gzip(tmp_path):
    (tmp_path / "corpus.jsonl.gz").write_text(json.dumps({"text": TEXT}) + "\n")
    one_line_error(documents(tmp_path, config_for(tmp_path, "corpus.jsonl.gz")), "corpus.jsonl.gz: not a gzip file")


def test_truncated_jsonl_gz(tmp_path):
    data = gzip.compress("".join(json.dumps({"id": str(i), "text": f"{TEXT} {i}"}) + "\n"
                                 for i in range(400)).encode())
    (tmp_path / "corpus.jsonl.gz").write_bytes(data[: len(data) // 2])
    one_line_error(documents(tmp_path, config_for(tmp_path, "corpus.jsonl.gz")),
                   "corpus.jsonl.gz: truncated gzip file: it ends inside line")


@needs_eio
def test_unreadable_corpus(tmp_path):
    (tmp_path / "corpus.jsonl").symlink_to(UNREADABLE)
    one_line_error(documents(tmp_path, config_for(tmp_path, "corpus.jsonl")),
                   "corpus.jsonl: cannot read (Input/output error)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file; test_unreadable_corpus covers root")
def test_corpus_without_read_permission(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"text": TEXT}) + "\n")
    corpus.chmod(0)
    one_line_error(documents(tmp_path, config_for(tmp_path, "corpus.jsonl")), "corpus.jsonl: cannot read (Permission denied)")


def test_corpus_that_is_a_folder_with_an_explicit_format(tmp_path):
    (tmp_path / "corpus.jsonl").mkdir()
    config = config_for(tmp_path, "corpus.jsonl", "")
    config.write_text(config.read_text().replace("input:\n", "input:\n  format: jsonl\n"))
    one_line_error(documents(tmp_path, config), "corpus.jsonl: is a folder, not a file")


@needs_eio
def test_one_unreadable_txt_in_a_folder_is_skipped_and_counted(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text(TEXT)
    (folder / "b.txt").symlink_to(UNREADABLE)
    (folder / "c.txt").write_bytes(b"caf\xe9 " + TEXT.encode())
    result = documents(tmp_path, config_for(tmp_path, "texts"))
    assert result.exit_code == 0, result.output
    counts = document_counts(tmp_path)
    assert counts["out"] == 1 and counts["skipped_by_reason"] == {"unreadable": 1, "invalid_utf8": 1}
    assert f"{folder / 'b.txt'}: cannot read (Input/output error)" in counts["problems"]
    assert f"{folder / 'c.txt'}:1: not UTF-8 text (byte 0xe9)" in counts["problems"]


def test_bad_jsonl_lines_are_counted_and_reported_with_file_and_line(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b"\n".join([
        json.dumps({"id": "good", "text": TEXT}).encode(),
        b'{"id": "latin1", "text": "caf\xe9 ' + TEXT.encode() + b'"}',
        json.dumps({"id": ["a", "list"], "text": TEXT + " 2"}).encode(),
        json.dumps({"id": {"an": "object"}, "text": TEXT + " 3"}).encode(),
        json.dumps({"id": "number-text", "text": 42}).encode(),
        b'{"id": "cut", "text": "Unterminated',
        json.dumps({"id": 7, "text": TEXT + " 4"}).encode(),
    ]) + b"\n")
    result = documents(tmp_path, config_for(tmp_path, "corpus.jsonl"))
    assert result.exit_code == 0, result.output
    counts = document_counts(tmp_path)
    assert counts["out"] == 2 and counts["skipped"] == 5
    assert counts["skipped_by_reason"] == {"invalid_utf8": 1, "bad_id": 2, "bad_text": 1, "invalid_json": 1}
    assert counts["problems"] == [
        f"{corpus}:2: not valid UTF-8 (byte 0xe9 at byte 30 of the line)",
        f"{corpus}:3: id field 'id' is a list, not a string or an integer",
        f"{corpus}:4: id field 'id' is an object, not a string or an integer",
        f"{corpus}:5: field 'text' is an integer, not a string",
        f"{corpus}:6: not valid JSON (Unterminated string starting at column 23)",
    ]
    ids = [json.loads(line)["id"] for line in (tmp_path / "run" / "stages" / "documents" / "part-00000.jsonl")
           .read_text().splitlines()]
    assert ids == ["good", "7"]
    assert " ".join(result.output.split()).count("not valid UTF-8") == 1  # reported, not only counted


# -- response cache -------------------------------------------------------------------------------

def test_cache_path_that_is_a_folder(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "a", "text": TEXT}) + "\n")
    (tmp_path / "cache").mkdir()
    config = config_for(tmp_path, "c.jsonl", "cache_path: cache\n")
    one_line_error(documents(tmp_path, config), f"{tmp_path / 'cache'}: cache_path is a folder")


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs, filled up: writes on it fail with ENOSPC (mounting needs root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    """Write a file until the disk is full."""
    try:
        with open(folder / "filler", "wb", buffering=0) as handle:
            while True:
                handle.write(b"\0" * 4096)
    except OSError as error:
        assert error.errno == 28, error  # ENOSPC


def test_response_cache_on_a_full_disk_names_the_cache_file(tmp_path, full_disk):
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "a", "text": TEXT}) + "\n")
    fill(full_disk)
    config = config_for(tmp_path, "c.jsonl", f"cache_path: {full_disk / 'responses.sqlite3'}\n")
    one_line_error(documents(tmp_path, config), f"{full_disk / 'responses.sqlite3'}: response cache", "disk full")


def test_storing_replies_on_a_full_disk_rolls_back_and_keeps_what_was_stored(full_disk):
    from synthllm.llm.base import ChatResponse
    from synthllm.llm.cache import CacheError, ResponseCache

    cache = ResponseCache(full_disk / "responses.sqlite3")
    stored = 0
    with pytest.raises(CacheError, match=r"responses\.sqlite3: response cache: cannot store replies: disk full"):
        for index in range(200):
            stored += cache.put_many([(f"key-{index}", "m", ChatResponse("x" * 1000, 1, 1, "stop"))])
    assert stored >= 1 and len(cache) == stored
    assert cache.get_many(["key-0"])["key-0"].text == "x" * 1000
    cache.close()


# -- graph, fit -----------------------------------------------------------------------------------

def test_graph_build_on_an_empty_file(tmp_path):
    (tmp_path / "concepts.jsonl").write_text("")
    one_line_error(runner.invoke(app, ["graph", "build", str(tmp_path / "concepts.jsonl"), "-o", str(tmp_path / "g")]),
                   "concepts.jsonl: no concept records")


def test_graph_build_on_a_binary_file(tmp_path):
    (tmp_path / "concepts.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    one_line_error(runner.invoke(app, ["graph", "build", str(tmp_path / "concepts.jsonl"), "-o", str(tmp_path / "g")]),
                   "concepts.jsonl:1: not valid UTF-8")


def test_fit_on_values_near_1e_300(tmp_path):
    csv = tmp_path / "tiny.csv"
    csv.write_text("model,tokens,metric\n" + "".join(f"m,{2 ** i},{(5 - i) * 1e-300}\n" for i in range(4)))
    one_line_error(runner.invoke(app, ["fit", str(csv)]), "tiny.csv:2: error 5e-300 is outside [1e-30, 1e+30]")


def test_fit_on_sizes_near_1e_300(tmp_path):
    csv = tmp_path / "tiny.csv"
    csv.write_text("model,tokens,metric\n" + "".join(f"m,{2 ** i}e-300,{0.5 - i / 20}\n" for i in range(4)))
    one_line_error(runner.invoke(app, ["fit", str(csv)]), "tiny.csv:2: tokens 1e-300 is outside")


def test_fit_reads_a_csv_with_a_utf8_bom(tmp_path):
    csv = tmp_path / "excel.csv"
    csv.write_bytes(b"\xef\xbb\xbfmodel,tokens,metric\n" + b"".join(
        f"m,{2 ** i},{0.3 + 0.2 / (1 + 2 ** i)}\n".encode() for i in range(5)))
    result = runner.invoke(app, ["fit", str(csv), "--bootstrap", "0", "--json", str(tmp_path / "fit.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "fit.json").read_text())["models"]["m"]["n_fit"] == 5


# -- quality --------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["dedup", "decontam"])
@pytest.mark.parametrize("field,value,what", [
    ("question", 5, "must be a string, not an integer"), ("question", None, "must be a string, not null"),
    ("question", ["a list"], "must be a string, not a list"), ("id", None, "must be a string or an integer, not null"),
    ("id", ["a"], "must be a string or an integer, not a list"), ("id", 1.5, "must be a string or an integer, not a float"),
])
def test_quality_commands_check_id_and_question_types(tmp_path, command, field, value, what):
    source = tmp_path / "samples.jsonl"
    rows = [{"id": "q1", "question": "What is two plus two?", "answer": "4"},
            {"id": "q2", "question": "What is three plus four?", "answer": "7", field: value}]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"problem": "Compute the area of a circle of radius three."}) + "\n")
    args = ["quality", command, str(source), str(tmp_path / "out.jsonl"), "-r", str(tmp_path / "report.json")]
    if command == "decontam":
        args += ["--benchmark", f"toy={bench}:problem"]
    one_line_error(runner.invoke(app, args), f"samples.jsonl:2: {field}: {what}")
    assert not (tmp_path / "out.jsonl").exists()


def test_quality_filter_with_an_empty_ratings_file(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": TEXT}) + "\n")
    (tmp_path / "ratings.jsonl").write_text("\n")
    result = runner.invoke(app, ["quality", "filter", str(corpus), str(tmp_path / "kept.jsonl"), "-r",
                                 str(tmp_path / "report.json"), "--ratings", str(tmp_path / "ratings.jsonl")])
    one_line_error(result, "ratings.jsonl: no ratings (the file is empty)")
    assert not (tmp_path / "kept.jsonl").exists()


@pytest.mark.parametrize("command", ["dedup", "decontam", "filter"])
def test_quality_commands_on_a_binary_input(tmp_path, command):
    source = tmp_path / "input.jsonl"
    source.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe garbage")
    args = ["quality", command, str(source), str(tmp_path / "out.jsonl"), "-r", str(tmp_path / "report.json")]
    args += {"decontam": ["--benchmark", f"toy={source}:problem"], "filter": ["--ratings", str(source)]}.get(command, [])
    one_line_error(runner.invoke(app, args), "input.jsonl:1: not valid UTF-8 (byte 0x8b")


@pytest.mark.parametrize("args,message", [
    (["dedup", "{empty}"], "empty.jsonl: no records (empty file)"),
    (["decontam", "{empty}", "--benchmark", "toy={bench}:problem"], "empty.jsonl: no records (empty file)"),
    (["decontam", "{samples}", "--benchmark", "toy={empty}:problem"], "empty.jsonl: benchmark file of 'toy' is empty"),
])
def test_quality_commands_on_empty_files(tmp_path, args, message):
    files = {"empty": tmp_path / "empty.jsonl", "bench": tmp_path / "bench.jsonl", "samples": tmp_path / "samples.jsonl"}
    files["empty"].write_text("")
    files["bench"].write_text(json.dumps({"problem": "Compute the area of a circle of radius three."}) + "\n")
    files["samples"].write_text(json.dumps({"id": "q1", "question": "What is two plus two?"}) + "\n")
    command, source, *rest = [arg.format(**files) for arg in args]
    result = runner.invoke(app, ["quality", command, source, str(tmp_path / "out.jsonl"), "-r",
                                 str(tmp_path / "report.json"), *rest])
    one_line_error(result, message)


# -- the run folder and the backend (the pipeline commands) ------------------------------------
def test_out_that_is_a_file(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "a", "text": TEXT}) + "\n")
    (tmp_path / "run").write_text("not a folder")
    one_line_error(documents(tmp_path, config_for(tmp_path, "c.jsonl")), f"{tmp_path / 'run'}: the run folder is a file")


def test_out_under_a_file(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "a", "text": TEXT}) + "\n")
    (tmp_path / "afile").write_text("x")
    result = runner.invoke(app, ["documents", "--config", str(config_for(tmp_path, "c.jsonl")),
                                 "--out", str(tmp_path / "afile" / "run")])
    one_line_error(result, "cannot create the run folder")


def test_full_disk_in_the_run_folder_stops_with_status_3_and_names_the_file(tmp_path, full_disk):
    lines = [json.dumps({"id": f"d{i}", "text": TEXT + f" Number {i}. " + "x" * 2000}) for i in range(200)]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    config = config_for(tmp_path, tmp_path / "c.jsonl", f"cache_path: {tmp_path / 'cache.sqlite3'}\n")
    result = runner.invoke(app, ["documents", "--config", str(config), "--out", str(full_disk / "run")])
    assert result.exit_code == 3 and "Traceback" not in result.output, result.output
    error = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and str(full_disk / "run") in error[0] and "free space" in error[0], result.output


def test_missing_api_key(tmp_path, monkeypatch):
    monkeypatch.delenv("SYNTHLLM_TEST_NO_KEY", raising=False)
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "a", "text": TEXT}) + "\n")
    config = config_for(tmp_path, "c.jsonl", f"cache_path: {tmp_path / 'cache.sqlite3'}\n"
                        "llm: {backend: openai, model: gpt-4o-mini, api_key_env: SYNTHLLM_TEST_NO_KEY}\n")
    result = runner.invoke(app, ["concepts", "--config", str(config), "--out", str(tmp_path / "run")])
    one_line_error(result, "llm.api_key_env", "SYNTHLLM_TEST_NO_KEY")


def test_ray_not_installed(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if it were not installed
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "a", "text": TEXT}) + "\n")
    result = runner.invoke(app, ["run", str(config_for(tmp_path, "c.jsonl")), "--out", str(tmp_path / "run"),
                                 "--executor", "ray"])
    one_line_error(result, "pip install 'synthllm[ray]'")
