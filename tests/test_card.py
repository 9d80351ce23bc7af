"""The dataset card (synthllm card) and synthllm push, on a run folder written by the real pipeline.

No Hub is reachable here: the push tests run the real command against a loopback HTTP server that
plays the Hub up to the upload and then refuses it (and against a port where nothing listens), and
check everything up to that call: what was sent, with which token, and the one-line error.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from scripted_run import LEAK_BENCHMARK
from synthllm.card import card_facts, hub_license, size_category, write_card
from synthllm.cli import app
from synthllm.store import RunStore

TOKEN = "hf_test_token_never_written_4f9c2e"


@pytest.fixture(scope="module")
def measured_run(scripted_run, tmp_path_factory):
    """A copy of the scripted run with a report.json (small embedding samples) and its card written."""
    from synthllm.analysis import write_report

    run = tmp_path_factory.mktemp("card") / "run"
    shutil.copytree(scripted_run, run)
    write_report(run, lm=False, max_embed=40, max_divergence=20, browse_per_level=1)
    write_card(run)
    return run


def test_card_yaml_is_a_valid_hub_dataset_card(measured_run):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(measured_run / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0"  # every OpenStax sample record says CC-BY-4.0
    assert data["task_categories"] == ["question-answering", "text-generation"]
    assert data["size_categories"] == ["n<1K"]
    assert data["configs"] == [{"config_name": "default",
                                "data_files": [{"split": "train", "path": "dataset.parquet"}]}]
    assert card.text.lstrip().startswith("# synthllm synthetic questions and answers from corpus.jsonl")


def test_datasets_loads_the_run_folder_through_the_card(measured_run, tmp_path):
    datasets = pytest.importorskip("datasets")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    ds = datasets.load_dataset(str(measured_run), split="train", cache_dir=str(tmp_path / "cache"))
    rows = RunStore(measured_run).dataset_parquet_rows()
    assert ds.num_rows == len(rows) == json.loads((measured_run / "manifest.json").read_text())["dataset_rows"]
    assert ds[0]["messages"] == rows[0]["messages"] and ds[0]["id"] == rows[0]["id"]
    assert set(ds.column_names) == set(rows[0])


def test_card_tells_the_runs_story(measured_run):
    text = (measured_run / "README.md").read_text()
    manifest = json.loads((measured_run / "manifest.json").read_text())
    report = json.loads((measured_run / "report.json").read_text())
    assert f"| **all** | **{manifest['dataset_rows']}** |" in text
    for level, n in manifest["dataset_by_level"].items():
        assert f"Level-{level} (" in text and f"| {n} |" in text
    assert "CC-BY-4.0 (12 documents)" in text
    dedup, decontam = manifest["stages"]["dedup"], manifest["stages"]["decontam"]
    assert f"removed {dedup['removed']} of {dedup['in']}" in text
    assert f"against `{LEAK_BENCHMARK}`" in text and f"removed 1 of {decontam['in']} ({LEAK_BENCHMARK} 1)" in text
    prompts = manifest["versions"]["prompts"]
    assert ", ".join(f"{name} {prompts[name]}" for name in ("concepts", "level1", "level2", "level3")) in text
    assert f"answers {prompts['answer']}" in text
    vendi = report["diversity"]["levels"]["1"]["vendi"]
    assert f"| {vendi:.3g} |" in text
    coverage = json.loads((measured_run / "graph" / "coverage.json").read_text())
    assert f"{coverage['walks']} walks used {coverage['topics']['used']} topics" in text
    assert "arXiv:2503.19551" in text and "arXiv:2410.01720" in text
    assert 'load_dataset("path/to/run-folder", split="train")' in text and "SFTTrainer" in text


def test_card_without_report_or_licence(scripted_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(scripted_run, run)
    # A corpus without a license field: rewrite the documents shards without it.
    store = RunStore(run)
    for shard in store.shards("documents"):
        path = store.stage_dir("documents") / f"{shard}.jsonl"
        docs = [json.loads(line) for line in path.read_text().splitlines()]
        for doc in docs:
            doc["meta"].pop("license")
        path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    facts = card_facts(run, repo_id="someone/synthetic-math")
    assert facts["header"]["license"] == "unknown" and facts["report"] is None
    text = write_card(run, repo_id="someone/synthetic-math").read_text()
    assert "license: unknown" in text and "carry no `license` field" in text
    assert "No `report.json` in the run folder yet" in text
    assert 'load_dataset("someone/synthetic-math", split="train")' in text


def test_report_grounding_reaches_the_card(measured_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(measured_run, run)
    report = json.loads((run / "report.json").read_text())
    report["grounding"] = {"embedder": "all-MiniLM-L6-v2", "k": 5, "n_documents": 12, "chance": 5 / 12,
                           "levels": {"1": {"share": 0.875, "n": 16, "worst": []},
                                      "3": {"share": 0.5, "n": 8, "worst": []}}}
    (run / "report.json").write_text(json.dumps(report))
    text = write_card(run).read_text()
    assert "chance 0.417" in text and "Level-1 0.875 (n=16), Level-3 0.5 (n=8)" in text


def test_licence_and_size_mapping():
    assert hub_license("CC-BY-4.0") == hub_license("CC BY 4.0") == "cc-by-4.0"
    assert hub_license("Apache-2.0") == "apache-2.0" and hub_license("my own terms") is None
    assert [size_category(n) for n in (0, 999, 1000, 54_321, 2_000_000)] == \
        ["n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]


def test_cli_card(measured_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(measured_run, run)
    (run / "README.md").unlink()
    result = CliRunner().invoke(app, ["card", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "README.md").is_file() and "README.md" in result.output


@pytest.mark.parametrize("damage", ["missing", "garbage-manifest"])
def test_cli_card_on_a_bad_folder_is_a_one_line_error(scripted_run, tmp_path, damage):
    run = tmp_path / "run"
    if damage == "garbage-manifest":
        shutil.copytree(scripted_run, run)
        (run / "manifest.json").write_bytes(b"\xff\x00 not json")
    result = CliRunner().invoke(app, ["card", str(run)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output


# -- push ---------------------------------------------------------------------------

class FakeHub(BaseHTTPRequestHandler):
    """Plays the Hub up to the upload: creates the repository, accepts the card's YAML, then refuses (403)."""

    requests: ClassVar[list] = []
    refusal = 403  # 403, not 500, by default: huggingface_hub retries a 5xx five times with backoff (about 25 s)

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.requests.append({"method": self.command, "path": self.path,
                              "authorization": self.headers.get("Authorization"), "body": body})
        host, port = self.server.server_address
        if self.path == "/api/repos/create":
            status, reply = 200, {"url": f"http://{host}:{port}/datasets/someone/synthetic-math"}
        elif self.path == "/api/validate-yaml":
            status, reply = 200, {"errors": [], "warnings": []}
        else:
            status, reply = self.refusal, {"error": "the fake hub refuses every upload"}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_HEAD = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub():
    FakeHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", FakeHub.requests
    server.shutdown()
    server.server_close()


def run_push(run, endpoint, tmp_path, *args, token=TOKEN):
    """``synthllm push`` in a fresh process (huggingface_hub reads HF_ENDPOINT when imported)."""
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home"),
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "synthllm.cli", "push", str(run), *args],
                          check=False, capture_output=True, text=True, env=env, timeout=120)


def _files_containing(folder, needle):
    return [p for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_push_sends_the_dataset_privately_with_the_token_and_a_failed_upload_is_one_line(
        measured_run, tmp_path, fake_hub):
    run = tmp_path / "run"
    shutil.copytree(measured_run, run)
    endpoint, requests = fake_hub
    result = run_push(run, endpoint, tmp_path, "--repo", "someone/synthetic-math")
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: push to {endpoint}/datasets/someone/synthetic-math failed")
    assert "403" in lines[0] and "refuses every upload" in lines[0]
    assert "Traceback" not in output and TOKEN not in output
    (create,) = [r for r in requests if r["path"] == "/api/repos/create"]
    assert json.loads(create["body"]) == {"name": "synthetic-math", "organization": "someone",
                                          "visibility": "private", "type": "dataset"}
    authorized = [r for r in requests if r["authorization"]]
    assert authorized and all(r["authorization"] == f"Bearer {TOKEN}" for r in authorized)
    # The upload itself was attempted, for exactly the published files (no stages, no cache).
    upload = [r for r in requests if "/api/datasets/someone/synthetic-math/" in r["path"]]
    assert upload, [r["path"] for r in requests]
    announced = {f["path"] for r in upload if r["body"].startswith(b"{")
                 for f in json.loads(r["body"]).get("files", [])}
    assert announced == {"README.md", "dataset.parquet", "dataset.jsonl", "report.html", "report.json"}
    # The card was rewritten for the repository; the token is written nowhere.
    assert 'load_dataset("someone/synthetic-math", split="train")' in (run / "README.md").read_text()
    assert not _files_containing(run, TOKEN) and not _files_containing(tmp_path, TOKEN)


def test_push_with_nothing_listening_is_one_line(measured_run, tmp_path):
    import socket

    with socket.socket() as probe:  # a loopback port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = tmp_path / "run"
    shutil.copytree(measured_run, run)
    result = run_push(run, f"http://127.0.0.1:{port}", tmp_path, "--repo", "someone/synthetic-math", "--no-card")
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: push to ") and "Traceback" not in output
    assert (run / "README.md").read_bytes() == (measured_run / "README.md").read_bytes()  # --no-card: as it was


@pytest.mark.parametrize("args,token,message", [
    (["--repo", "someone/synthetic-math"], None, "HF_TOKEN is not set"),
    (["--repo", "no-owner"], TOKEN, "is not OWNER/NAME"),
    (["--repo", "someone/x", "--token-env", "MY_HUB_TOKEN"], None, "MY_HUB_TOKEN is not set"),
])
def test_push_bad_input_is_one_line_before_any_request(measured_run, monkeypatch, args, token, message):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    before = (measured_run / "README.md").read_bytes()
    result = CliRunner().invoke(app, ["push", str(measured_run), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert (measured_run / "README.md").read_bytes() == before  # stopped before writing the card


@pytest.mark.slow
def test_push_when_the_hub_keeps_answering_500_is_one_line(measured_run, tmp_path, fake_hub, monkeypatch):
    """A 5xx is retried by huggingface_hub (five times, with backoff); the retries' warnings stay quiet."""
    endpoint, requests = fake_hub
    monkeypatch.setattr(FakeHub, "refusal", 500)
    run = tmp_path / "run"
    shutil.copytree(measured_run, run)
    result = run_push(run, endpoint, tmp_path, "--repo", "someone/synthetic-math", "--no-card")
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "500" in lines[0] and "Traceback" not in output
    assert len([r for r in requests if r["path"].endswith("/preupload/main")]) > 1  # it was retried
