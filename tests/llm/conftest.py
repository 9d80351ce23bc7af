"""Fixtures for the server backend: a real ``transformers serve`` on loopback and a fault proxy."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from synthllm.llm.fault_proxy import FaultProxy

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True)
class RunningServer:
    """A started OpenAI-compatible server: its root URL (no ``/v1``) and the model id it serves."""

    root: str
    model: str

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def openai_server(tmp_path_factory) -> RunningServer:
    """``transformers serve`` pinned to the embedded SmolLM2 folder, on a free loopback port."""
    pytest.importorskip("fastapi", reason="transformers serve needs transformers[serving]")
    from synthllm.llm.embedded import resolve_model_path

    folder = str(resolve_model_path())
    port = _free_port()
    log_path = Path(tmp_path_factory.mktemp("server")) / "serve.log"
    # One torch thread: on a small shared machine more threads only contend.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu", folder]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"transformers serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{root}/health", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not answer /health in 300 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield RunningServer(root, folder)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def proxy_for(request):
    """Factory: ``proxy_for(upstream_root_or_None, schedule, default)`` starts a FaultProxy, stopped after the test."""
    started: list[FaultProxy] = []

    def start(upstream: str | None, schedule=None, default: str = "pass") -> FaultProxy:
        proxy = FaultProxy(upstream, schedule or {}, default).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
