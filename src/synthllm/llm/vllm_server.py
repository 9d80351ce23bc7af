"""A managed local vLLM server: started on a free loopback port, used, and never left behind.

``llm.backend: vllm`` makes synthllm start vLLM's OpenAI-compatible server
itself (``python -m vllm.entrypoints.openai.api_server``, the module behind
``vllm serve``), wait until ``/health`` answers, send every request through
the ordinary :class:`~synthllm.llm.openai_backend.OpenAIBackend` (rate limits,
retries, breaker, accounting: nothing is duplicated), and stop the server at
the end. vLLM is the engine users run on GPU clusters; on this project's CPU
machines ``vllm-cpu`` 0.32.0 serves SmolLM2-135M at 252 output tokens/s with
``--enforce-eager`` (33 s to start) and 307-330 compiled (140 s to start),
against 116-152 for the embedded transformers backend in bf16 (issue #14).

Why the server runs in another interpreter: vllm-cpu pins ``transformers<5.20``
while synthllm runs a newer one, so it lives in its own virtualenv
(``scripts/setup_vllm.sh`` makes ``.venv-vllm``) and synthllm only needs its
``python``. Its ``vllm`` console script fails with ``PackageNotFoundError`` on
the CPU build, hence ``python -m``.

No orphan server, however synthllm ends. The server is started under a small
guard process (:data:`_GUARD`, run by the server's own Python) that leads a
new process group holding the API server and every process vLLM forks (its
engine core). The guard holds the read end of a pipe whose only write end is
in synthllm. When synthllm closes the backend, returns from Ctrl-C, or dies by
any signal including ``kill -9``, the kernel closes the write end, the guard
reads end-of-file and stops the whole group: SIGTERM (vLLM shuts down its
engine), then SIGKILL of whatever is left after ``grace`` seconds. A
parent-death signal (``prctl(PR_SET_PDEATHSIG)``) was not used: it fires when
the *thread* that started the child ends, so a backend made in a worker thread
would lose its server when that thread finished, and it reaches only the
direct child, not vLLM's engine process.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Sequence

from ..errors import BackendUnavailable, MissingDependency
from .base import ChatRequest, ChatResponse

logger = logging.getLogger("synthllm.llm.vllm")

#: the virtualenv ``scripts/setup_vllm.sh`` creates, looked for in the working folder and the checkout
VLLM_VENV = ".venv-vllm"

#: Run by the server's Python as ``python -c _GUARD GRACE COMMAND...``; stdin is the pipe from synthllm.
_GUARD = r"""
import os, signal, subprocess, sys, threading, time
grace = float(sys.argv[1])
if os.getpgid(0) != os.getpid():  # never signal a group this guard does not lead (synthllm's own)
    sys.exit("synthllm vLLM guard: not a process-group leader (start it with start_new_session=True)")
# started with start_new_session: this guard leads a process group that holds the server and
# every process it forks; killpg(0, ...) reaches all of them (and the guard).
stopping = threading.Event()

def stop(*_):
    if stopping.is_set():
        return
    stopping.set()
    os.killpg(0, signal.SIGTERM)  # vLLM shuts its engine down; this guard's handler returns at once
    threading.Timer(grace, os.killpg, (0, signal.SIGKILL)).start()

def watch():
    try:
        sys.stdin.buffer.read()  # returns at end-of-file: synthllm closed the pipe, or died
    except OSError:
        pass
    stop()

signal.signal(signal.SIGTERM, stop)  # a Python handler: reset to the default in the server (exec)
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)
threading.Thread(target=watch, daemon=True).start()
child.wait()
stop()  # also when the server ended on its own (a crash): its helpers go with it
time.sleep(1.0)
os.killpg(0, signal.SIGKILL)  # whatever is left, this guard included
"""


def find_vllm_python(configured: str | Path | None = None) -> str:
    """The Python interpreter that has vLLM installed.

    Parameters
    ----------
    configured : ``llm.vllm_python``; wins when set.

    Returns
    -------
    str : ``configured``, else ``$SYNTHLLM_VLLM_PYTHON``, else ``.venv-vllm/bin/python`` in the
        working folder or in the synthllm checkout, else the current interpreter.
    """
    if configured:
        return str(configured)
    if os.environ.get("SYNTHLLM_VLLM_PYTHON"):
        return os.environ["SYNTHLLM_VLLM_PYTHON"]
    checkout = Path(__file__).resolve().parents[3]
    for root in (Path.cwd(), checkout):
        candidate = root / VLLM_VENV / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    return sys.executable


def vllm_model_folder(model: str) -> str:
    """A folder or hub name vLLM can load for ``model``.

    The packaged ``smollm2-135m-instruct`` and ``.gguf`` files go through the
    embedded backend's one-time conversion to a safetensors folder
    (:func:`synthllm.llm.embedded.resolve_model_path`); any other name (a
    folder, or a hub id on a machine that can download) is passed as it is.
    """
    from .embedded import DEFAULT_MODEL, resolve_model_path

    if model == DEFAULT_MODEL or model.endswith(".gguf"):
        return str(resolve_model_path(model))
    return model


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def vllm_env(kv_cache_gb: float | None = None, extra: dict | None = None) -> dict:
    """Environment for a vLLM process: ours, plus the CPU KV-cache size unless already set.

    Parameters
    ----------
    kv_cache_gb : ``VLLM_CPU_KVCACHE_SPACE`` in GiB (the CPU build refuses to start without room for it).
    extra : further variables (e.g. ``VLLM_CACHE_ROOT``).
    """
    env = dict(os.environ)
    if kv_cache_gb is not None:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{kv_cache_gb:g}")
    env.update(extra or {})
    return env


_PROBE = """
import importlib.metadata, importlib.util, sys
if importlib.util.find_spec("vllm") is None:
    sys.exit(1)
try:
    importlib.metadata.distribution("vllm-cpu")
    print("cpu")
except importlib.metadata.PackageNotFoundError:
    print("other")
"""


def probe_vllm(python: str) -> str:
    """``"cpu"`` for the ``vllm-cpu`` build, ``"other"`` for any other vLLM.

    Raises
    ------
    MissingDependency : ``python`` does not exist or has no vLLM.
    """
    if not Path(python).exists():
        raise MissingDependency(f"the vLLM interpreter {python} does not exist; create it with "
                                "`bash scripts/setup_vllm.sh` or set llm.vllm_python")
    check = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True)
    if check.returncode != 0:
        raise MissingDependency(f"{python} has no vLLM: pip install 'synthllm[vllm]' in that environment "
                                "(vllm-cpu on a machine without a GPU), or run `bash scripts/setup_vllm.sh`")
    return check.stdout.strip()


def engine_args(args: Sequence[str], model: str, build: str) -> list[str]:
    """``args`` plus what the CPU build needs to serve seeded requests.

    vllm-cpu 0.32.0 crashes its engine (``RuntimeError: CPU Generator does not
    use offset``) when a request with a ``seed`` is prefilled in chunks, i.e.
    whenever a step's prompts exceed ``max_num_batched_tokens``; synthllm seeds
    every request. On that build, unless ``args`` already say otherwise,
    chunked prefill is turned off and a step may hold a whole context
    (``--max-num-batched-tokens`` = ``--max-model-len`` if given, else the
    model's ``max_position_embeddings``, else 8192).
    """
    args = list(args)
    if build != "cpu" or any("chunked-prefill" in a or "max-num-batched-tokens" in a for a in args):
        return args
    length = None
    for flag in ("--max-model-len", "--max_model_len"):
        if flag in args[:-1]:
            length = int(args[args.index(flag) + 1])
    if length is None:
        try:
            length = int(json.loads((Path(model) / "config.json").read_text())["max_position_embeddings"])
        except (OSError, ValueError, KeyError, TypeError):
            length = 8192
    return args + ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(length)]


def _log_tail(path: Path, chars: int = 3000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - chars))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def start_guarded(command: Sequence[str], python: str, grace: float, log, env: dict | None = None
                  ) -> tuple[subprocess.Popen, int]:
    """Start ``command`` under the guard (see the module docstring).

    Parameters
    ----------
    command : the program and its arguments.
    python : interpreter that runs the guard (any Python 3).
    grace : seconds between SIGTERM and SIGKILL when the group is stopped.
    log : open file for the output of the guard and ``command``.
    env : the environment (default: this one).

    Returns
    -------
    (the guard's process, the pipe's write end): closing the write end, or the
    end of this process, stops ``command`` and every process in its group.
    """
    read_end, write_end = os.pipe()  # both non-inheritable; the guard gets read_end as its stdin only
    try:
        process = subprocess.Popen([python, "-c", _GUARD, str(grace), *command], stdin=read_end, stdout=log,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return process, write_end


class VLLMServer:
    """One vLLM OpenAI-compatible server process, started and watched by synthllm.

    Parameters
    ----------
    model : model folder (or hub id) vLLM loads.
    served_name : the model name requests use (and cache keys contain).
    python : interpreter with vLLM installed (see :func:`find_vllm_python`).
    args : extra server arguments, e.g. ``["--enforce-eager", "--max-model-len", "4096"]``.
    port : loopback port; default a free one.
    startup_timeout : seconds to wait for ``/health``.
    kv_cache_gb : ``VLLM_CPU_KVCACHE_SPACE`` unless the environment sets it.
    env : extra environment variables for the server.
    log_path : where the server's output goes; default a temporary file.
    grace : seconds the server gets to shut down before it is killed.
    """

    def __init__(self, model: str, served_name: str, python: str | None = None, args: Sequence[str] = (),
                 port: int | None = None, startup_timeout: float = 600.0, kv_cache_gb: float | None = 2.0,
                 env: dict | None = None, log_path: str | Path | None = None, grace: float = 15.0):
        self.model, self.served_name = model, served_name
        self.python = python or find_vllm_python()
        self.args = list(args)
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.startup_timeout = startup_timeout
        self.grace = grace
        self.env = vllm_env(kv_cache_gb, env)
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="synthllm-vllm-", suffix=".log")
            os.close(handle)
            log_path = name
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None
        self._pipe_write: int | None = None
        self._finalizer = None

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    @property
    def command(self) -> list[str]:
        """The server command line (without the guard)."""
        return [self.python, "-m", "vllm.entrypoints.openai.api_server", "--host", self.host,
                "--port", str(self.port), "--model", self.model, "--served-model-name", self.served_name,
                *self.args]

    def start(self) -> "VLLMServer":
        """Start the server and wait until it answers ``/health``.

        Raises
        ------
        MissingDependency : the interpreter does not exist or has no vLLM.
        BackendUnavailable : the server died while starting, or did not answer in ``startup_timeout``
            seconds; the message ends with the tail of its log.
        """
        self.args = engine_args(self.args, self.model, probe_vllm(self.python))
        with open(self.log_path, "ab") as log:
            self.process, write_end = start_guarded(self.command, self.python, self.grace, log, self.env)
        self._pipe_write = write_end
        # Closed at interpreter exit too, if nobody called stop(); a kill -9 closes it in the kernel.
        self._finalizer = weakref.finalize(self, _close_fd, write_end, self.process)
        atexit.register(self._finalizer)
        logger.info("starting vLLM for %s on %s (log: %s)", self.served_name, self.root, self.log_path)
        started = time.monotonic()
        while True:
            if self.process.poll() is not None:
                tail = _log_tail(self.log_path)
                self.stop()
                raise BackendUnavailable(f"the vLLM server exited with code {self.process.returncode} while "
                                         f"starting (log {self.log_path}):\n{tail}")
            if self._healthy():
                break
            if time.monotonic() - started > self.startup_timeout:
                tail = _log_tail(self.log_path)
                self.stop()
                raise BackendUnavailable(f"the vLLM server did not answer {self.root}/health within "
                                         f"{self.startup_timeout:g} s (log {self.log_path}):\n{tail}")
            time.sleep(0.5)
        logger.info("vLLM ready in %.0f s", time.monotonic() - started)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.root}/health", timeout=5) as reply:
                return reply.status == 200
        except (OSError, urllib.error.URLError):
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop the server and every process it started; waits for them (idempotent)."""
        if self.process is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
            atexit.unregister(self._finalizer)
            self._finalizer = None
        _close_fd(self._pipe_write, None)  # the guard sees end-of-file and stops the group
        self._pipe_write = None
        try:
            self.process.wait(self.grace + 10)
        except subprocess.TimeoutExpired:
            _kill_group(self.process.pid)
            self.process.wait()
        _kill_group(self.process.pid)  # stragglers of a guard that was itself killed

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _close_fd(fd: int | None, process: subprocess.Popen | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
    if process is not None:  # at interpreter exit: give the guard a moment to stop the group
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, 9)
    except (ProcessLookupError, PermissionError):
        pass


class VLLMBackend:
    """The OpenAI-compatible backend, talking to a vLLM server it started itself.

    Parameters
    ----------
    model : ``"smollm2-135m-instruct"`` (the packaged model), a model folder, a ``.gguf`` file, or a hub id.
    python : interpreter with vLLM (default :func:`find_vllm_python`).
    server_args : extra arguments for the server (``llm.vllm_args``).
    startup_timeout : seconds to wait for the server to become healthy.
    kv_cache_gb : ``VLLM_CPU_KVCACHE_SPACE`` (CPU build) unless the environment sets it.
    env : extra environment variables for the server.
    log_path : the server's log file (default: a temporary file).
    **openai_options : passed to :class:`~synthllm.llm.openai_backend.OpenAIBackend`
        (``max_concurrency``, ``timeout``, ``max_retries``, ``prices``, ...).

    The model is served under the name ``model`` as given (so cache keys and
    dataset records name it as the config does). ``close()`` stops the server.
    """

    def __init__(self, model: str, python: str | None = None, server_args: Sequence[str] = (),
                 startup_timeout: float = 600.0, kv_cache_gb: float | None = 2.0, env: dict | None = None,
                 log_path: str | Path | None = None, **openai_options):
        from .openai_backend import OpenAIBackend

        self.server = VLLMServer(vllm_model_folder(model), served_name=model, python=python, args=server_args,
                                 startup_timeout=startup_timeout, kv_cache_gb=kv_cache_gb, env=env,
                                 log_path=log_path).start()
        try:
            openai_options.setdefault("api_key_env", "SYNTHLLM_VLLM_API_KEY")  # unset: the placeholder key
            self.client = OpenAIBackend(model, base_url=self.server.base_url, **openai_options)
        except BaseException:
            self.server.stop()
            raise
        self.model_name = model
        self.preferred_batch_size = self.client.preferred_batch_size

    def __getattr__(self, name):  # usage, prices, context_window, concurrency_limit, ...: the client's
        if name in ("client", "server"):
            raise AttributeError(name)
        return getattr(self.client, name)

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        """Answer ``requests`` in order (see :meth:`OpenAIBackend.generate`)."""
        if not self.server.running:
            raise BackendUnavailable(f"the vLLM server is gone (log {self.server.log_path}):\n"
                                     f"{_log_tail(self.server.log_path)}")
        return self.client.generate(requests)

    def close(self) -> None:
        """Close the client and stop the server (idempotent)."""
        try:
            self.client.close()
        finally:
            self.server.stop()

    def __enter__(self) -> "VLLMBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
