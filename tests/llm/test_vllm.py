"""The managed vLLM server and vLLM's batch runner, for real (skipped without ``.venv-vllm``).

``bash scripts/setup_vllm.sh`` creates the virtualenv (``scripts/test.sh`` does it too). Every vLLM
here runs with ``--enforce-eager`` (about 35 s to start on 2 cores instead of 140 s) and its
compile cache in a temporary folder. Each test tags its processes with a unique environment
variable, so "no vLLM process left" is checked on exactly the processes it started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from vllm_runner import VLLM_ARGS, stage_requests

from synthllm.llm.vllm_server import find_vllm_python

pytestmark = pytest.mark.vllm

RUNNER = Path(__file__).with_name("vllm_runner.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _has_vllm(python: str) -> bool:
    if python == sys.executable:
        return False  # the test environment itself never has vLLM (it pins another transformers)
    check = subprocess.run([python, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"],
                           capture_output=True)
    return check.returncode == 0


if not _has_vllm(find_vllm_python()):
    pytest.skip("no vLLM virtualenv: run `bash scripts/setup_vllm.sh`", allow_module_level=True)


def tagged_processes(tag: str) -> list[int]:
    """Pids of live processes whose environment holds ``SYNTHLLM_TEST_TAG=tag``."""
    marker = f"SYNTHLLM_TEST_TAG={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
                if state != b"Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_until_gone(tag: str, seconds: float = 60) -> list[int]:
    """Wait (bounded) until no tagged process is left; return those still there."""
    deadline = time.monotonic() + seconds
    while (left := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture
def vllm_env(tmp_path, monkeypatch):
    """A unique tag and a private compile cache for every vLLM process this test starts."""
    tag = uuid.uuid4().hex
    monkeypatch.setenv("SYNTHLLM_TEST_TAG", tag)
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path / "vllm-cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield tag
    for pid in tagged_processes(tag):  # a failed test must not leave a server behind either
        os.kill(pid, signal.SIGKILL)


def small_config(tmp_path, docs: int = 2) -> dict:
    from vllm_runner import SAMPLE

    short = {"max_tokens": 96, "max_document_chars": 1200}  # room for a whole reply under its grammar
    return {"input": {"path": str(SAMPLE), "limit": docs}, "shard_size": 2,
            "llm": {"backend": "vllm", "vllm_args": VLLM_ARGS, "max_concurrency": 8},
            "filter": {"enabled": False}, "cache_path": str(tmp_path / "cache.sqlite3"),
            "decontamination": {"use_shared_benchmarks": False},
            # the demo's settings for a 135M model under its grammars: short lists, no "not suitable" way out
            "concepts": {**short, "max_tokens": 200, "topics": [1, 2], "concepts_per_topic": [5, 6]},
            "level1": {**short, "questions_per_document": 1, "allow_unsuitable": False},
            "level2": {**short, "questions_per_document": 1},
            "level3": {"max_tokens": 96, "max_walks": 1, "questions_per_walk": 1, "max_reference_chars": 600},
            "answers": {"max_tokens": 160}, "report": {"enabled": False}}


def test_pipeline_runs_against_the_managed_vllm_and_stops_it(vllm_env, tmp_path):
    from synthllm.config import Config
    from synthllm.pipeline import Pipeline

    config = Config.model_validate(small_config(tmp_path))
    pipeline = Pipeline(config, tmp_path / "run", show_progress=False)
    try:
        manifest = pipeline.run()
        server = pipeline.executor.backend.server
        assert server.running and tagged_processes(vllm_env)
    finally:
        pipeline.close()
    assert not server.running
    assert wait_until_gone(vllm_env, 30) == []
    assert manifest["reconciliation"] == {"ok": True, "problems": []}
    stages = manifest["stages"]
    assert stages["concepts"]["in"] == 2 and stages["concepts"]["failed"] == 0
    assert stages["level1"]["this_run"]["model_calls"] == 2 and stages["level1"]["completion_tokens"] > 0
    rows = pq.read_table(tmp_path / "run" / "dataset.parquet").to_pylist()
    assert rows and all(row["model"] == "smollm2-135m-instruct" for row in rows)


def test_kill_minus_9_of_synthllm_leaves_no_vllm_process(vllm_env, tmp_path):
    config_path = tmp_path / "config.yaml"
    config = small_config(tmp_path, docs=8)
    config["concepts"]["max_tokens"] = 400  # long enough that the run is still going when it is killed
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.Popen([sys.executable, "-c", "from synthllm.cli import app; app()", "run", str(config_path),
                            "--out", str(tmp_path / "run")], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        port = None
        deadline = time.monotonic() + 600
        while port is None and time.monotonic() < deadline and run.poll() is None:
            for pid in tagged_processes(vllm_env):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"vllm.entrypoints.openai.api_server" in cmdline:
                    port = int(cmdline[cmdline.index(b"--port") + 1])
            time.sleep(0.5)
        assert port is not None, "the managed vLLM server never started"
        while time.monotonic() < deadline and run.poll() is None:  # wait until it serves the run
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                    if re.search(rb"^vllm:request_success_total\{[^}]*\} [1-9]", reply.read(), re.M):
                        break
            except OSError:
                pass
            time.sleep(0.5)
        assert run.poll() is None, "the run ended before it could be killed"
        assert len(tagged_processes(vllm_env)) >= 3  # synthllm, the guard, the API server (and vLLM's engine)
        run.send_signal(signal.SIGKILL)
        run.wait()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert wait_until_gone(vllm_env, 60) == []


def test_batch_mode_killed_after_submission_resumes_the_same_job_and_matches_live(vllm_env, tmp_path):
    from synthllm.llm.vllm_server import VLLMBackend

    requests = stage_requests()
    with VLLMBackend("smollm2-135m-instruct", server_args=VLLM_ARGS, max_concurrency=8) as live:
        live_replies = live.generate(requests)
    assert all(r.ok for r in live_replies)
    assert wait_until_gone(vllm_env, 30) == []

    state_dir, out = tmp_path / "llm", tmp_path / "out.json"
    command = [sys.executable, str(RUNNER), "batch", str(state_dir), str(tmp_path / "cache.sqlite3"), str(out)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    job = None
    deadline = time.monotonic() + 300
    while job is None and time.monotonic() < deadline and first.poll() is None:
        for state_path in state_dir.glob("batch-*/state.json"):
            job = json.loads(state_path.read_text())["parts"][0]["job"]
        time.sleep(0.2)
    assert job is not None, "no batch job was submitted"
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert Path(f"/proc/{job['pid']}").exists()  # the job goes on without the run, like a provider's batch

    subprocess.run(command, check=True, timeout=900)
    result = json.loads(out.read_text())
    state = json.loads(next(state_dir.glob("batch-*/state.json")).read_text())
    assert len(state["parts"]) == 1 and state["parts"][0]["job"] == job  # polled the same job
    assert result["usage"]["submissions"] == 0 and result["usage"]["resumed_batches"] == 1
    assert result["errors"] == [None] * len(requests)
    # the same engine, the same seeded sampling: batch and live replies agree
    assert result["texts"] == [r.text for r in live_replies]
    usage = result["usage"]
    assert usage["batch_discount"] == 0.5 and usage["cost"] == pytest.approx(usage["cost_live"] / 2)
    assert wait_until_gone(vllm_env, 30) == []
