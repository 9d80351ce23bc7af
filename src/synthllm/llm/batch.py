"""Batch mode: a stage's requests as batch jobs, at half price, surviving a killed run.

OpenAI's and Anthropic's batch APIs answer within a day for half the price of
live requests, and a local ``vllm run-batch`` answers a file of requests
without any HTTP server. :class:`BatchBackend` is an ordinary
:class:`~synthllm.llm.base.Backend` whose ``generate(requests)`` turns all the
requests it is given into one *logical batch*:

1. Each distinct request becomes one line of the OpenAI batch format,
   ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``.
   ``custom_id`` is the request's cache key (:meth:`ChatRequest.cache_key`),
   so replies land in the response cache under the keys a live run uses and go
   through the same parsers. The body is exactly what the live backend would
   send (:meth:`OpenAIBackend._payload`: sampling, seed, stop, ``extra_body``
   and whatever else the live path adds), so live and batch runs ask the same.
2. The lines are split into request files of at most ``max_requests`` lines
   and ``max_bytes`` bytes (OpenAI's limits: 50,000 requests, 200 MB).
3. Each file is submitted (as a *part*) and its job id written at once, with
   the logical batch's other facts, to ``state_dir/batch-<id>/state.json``
   (atomic rename). The logical batch id is a hash of the model and the sorted
   keys, so a run killed while jobs are in flight finds the same state on its
   next start and polls the same jobs instead of paying twice. A job submitted
   but not yet written down when the run was killed is found again by its
   metadata tag (OpenAI Batch API) before anything is re-submitted.
4. The backend polls until every part has ended, collects each part's output
   into ``part-NNN.results.jsonl`` (so a collected part is never downloaded
   twice), and returns one :class:`ChatResponse` per request, in order.
5. A part that expired, was cancelled or failed, or whose lines failed with a
   retryable status (408, 409, 429, 5xx, or no line at all), leads to a new
   part holding only the missing requests, up to ``max_rounds`` submissions;
   what still misses after that, and lines that failed with other statuses,
   become failed responses with the reason.

Two submitters share that loop: :class:`OpenAIBatchSubmitter` (``/v1/files``
+ ``/v1/batches`` through the official ``openai`` client, any compatible
provider) and :class:`VLLMRunBatchSubmitter`, which runs vLLM's batch runner
(``python -m vllm.entrypoints.openai.run_batch -i in.jsonl -o out.jsonl``)
in the vLLM virtualenv as a detached job: like a provider's batch it goes on
when synthllm is killed, and the next run collects its output.

Cost accounting: :attr:`BatchBackend.prices` are the configured prices times
``discount`` (0.5, the providers' batch price), so executors that price
replies with ``backend.prices`` show the discounted cost, and :attr:`usage`
reports ``cost`` and ``cost_live`` (what the same tokens cost live).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence

from ..errors import BackendUnavailable, MissingDependency
from ..io import iter_jsonl
from ..store import atomic_write_text, jsonl_text
from .base import ChatRequest, ChatResponse, cut_at_stop

logger = logging.getLogger("synthllm.llm.batch")

ENDPOINT = "/v1/chat/completions"
#: OpenAI's per-file limits of the Batch API
OPENAI_MAX_REQUESTS = 50_000
OPENAI_MAX_BYTES = 200 * 1024 * 1024
#: line statuses worth submitting again (as a live request would be retried)
_RETRYABLE = {408, 409, 429}


@dataclasses.dataclass
class JobStatus:
    """Where a submitted job stands.

    ``state`` is ``"running"`` or ``"ended"``; an ended job has ``detail``
    (e.g. ``"completed"``, ``"expired"``, ``"failed: <why>"``).
    """

    state: str
    detail: str = ""


class Submitter(Protocol):
    """Where request files go: submit, poll, collect.

    ``name`` is recorded in the state (a state made by another submitter is
    not resumed by this one); ``max_active`` is how many jobs may run at once;
    ``poll_interval`` is the seconds between polls.
    """

    name: str
    max_active: int
    poll_interval: float

    def submit(self, path: Path, tag: str) -> dict:
        """Submit the request file ``path``; return the job (JSON-serialisable), tagged ``tag``."""

    def find(self, tag: str) -> dict | None:
        """A job submitted earlier with ``tag`` that is not failed, if any (None if the submitter cannot tell)."""

    def poll(self, job: dict) -> JobStatus:
        """The job's state now."""

    def collect(self, job: dict) -> Iterator[dict]:
        """The output and error lines of an ended job (OpenAI batch output format)."""


def batch_line(key: str, body: dict) -> dict:
    """One line of a request file in the OpenAI batch format."""
    return {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}


def split_lines(lines: Iterable[str], max_requests: int, max_bytes: int) -> Iterator[list[str]]:
    """Group serialised lines into files of at most ``max_requests`` lines and ``max_bytes`` bytes.

    Parameters
    ----------
    lines : JSONL lines, each ending in a newline.
    max_requests, max_bytes : the provider's per-file limits.

    Returns
    -------
    Iterator of line lists; a single line larger than ``max_bytes`` raises ``ValueError``.
    """
    group: list[str] = []
    size = 0
    for line in lines:
        length = len(line.encode("utf-8"))
        if length > max_bytes:
            raise ValueError(f"one batch request is {length} bytes, over the {max_bytes}-byte file limit")
        if group and (len(group) >= max_requests or size + length > max_bytes):
            yield group
            group, size = [], 0
        group.append(line)
        size += length
    if group:
        yield group


class BatchBackend:
    """Answers requests through batch jobs (see the module docstring).

    Parameters
    ----------
    live : an :class:`~synthllm.llm.openai_backend.OpenAIBackend` configured as
        the live run would be; its request bodies (``_payload``) and reply
        reading (``_to_response``) are reused, it sends nothing itself.
    submitter : :class:`OpenAIBatchSubmitter` or :class:`VLLMRunBatchSubmitter`.
    state_dir : folder for request files, job ids and collected results (e.g. the run folder's ``llm``).
    discount : price factor of batch requests (0.5 at OpenAI and Anthropic).
    max_requests, max_bytes : per-file limits; larger logical batches are split.
    max_rounds : submissions per request at most (the first and the re-submissions of missing ones).
    poll_interval : seconds between polls (default: the submitter's).
    """

    #: tells executors to hand over a whole stage's pending requests in one ``generate`` call
    batch_mode = True

    def __init__(self, live, submitter: Submitter, state_dir: str | Path, discount: float = 0.5,
                 max_requests: int = OPENAI_MAX_REQUESTS, max_bytes: int = OPENAI_MAX_BYTES,
                 max_rounds: int = 3, poll_interval: float | None = None):
        if not 0 < discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        self.live = live
        self.submitter = submitter
        self.state_dir = Path(state_dir)
        self.discount = discount
        self.max_requests, self.max_bytes = max_requests, max_bytes
        self.max_rounds = max_rounds
        self.poll_interval = submitter.poll_interval if poll_interval is None else poll_interval
        self.model_name = live.model_name
        #: one logical batch per generate call: as many requests as the executor has
        self.preferred_batch_size = 10 ** 9
        live_prices = getattr(live, "prices", None)
        self.prices = {k: v * discount for k, v in live_prices.items()} if live_prices else None
        self._totals = {"requests": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0, "submissions": 0,
                        "resumed_batches": 0}

    @property
    def usage(self) -> dict:
        """Running totals; with prices, ``cost`` (discounted) and ``cost_live`` (the same tokens live)."""
        totals = dict(self._totals, batch_discount=self.discount)
        if self.prices:
            cost = (totals["prompt_tokens"] * self.prices.get("prompt", 0.0)
                    + totals["completion_tokens"] * self.prices.get("completion", 0.0)) / 1e6
            totals["cost"] = cost
            totals["cost_live"] = cost / self.discount
        return totals

    # -- the logical batch ------------------------------------------------------------------
    def batch_id(self, keys: Iterable[str]) -> str:
        """The logical batch's id: a hash of the model, the submitter and the sorted distinct keys."""
        digest = hashlib.sha256(f"{self.model_name}\n{self.submitter.name}\n".encode())
        for key in sorted(set(keys)):
            digest.update(key.encode() + b"\n")
        return digest.hexdigest()[:16]

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        """Answer ``requests`` in order through batch jobs; blocks until every part has ended.

        Parameters
        ----------
        requests : the requests (all of a stage's pending ones, ideally).

        Returns
        -------
        list of ChatResponse, one per request; identical requests share one batch line.

        Raises
        ------
        BackendUnavailable : the submitter cannot be reached (after its client's retries).
        """
        if not requests:
            return []
        keys = [request.cache_key(self.model_name) for request in requests]
        unique = dict(zip(keys, requests))
        folder = self.state_dir / f"batch-{self.batch_id(unique)}"
        state = self._load_or_create(folder, unique)
        results = self._run(folder, state, unique)
        replies = []
        for key, request in zip(keys, requests):
            reply = dataclasses.replace(results[key])
            if reply.ok and request.sampling.stop:  # as the live backend: servers that ignore `stop`
                reply.text, _ = cut_at_stop(reply.text, request.sampling.stop)
            replies.append(reply)
        for reply in results.values():
            self._totals["requests"] += 1
            self._totals["failed"] += not reply.ok
            self._totals["prompt_tokens"] += reply.prompt_tokens
            self._totals["completion_tokens"] += reply.completion_tokens
        if not state.get("done"):
            # Files stay until close(): a run killed before the caller cached the replies finds them here.
            state["done"] = True
            self._save(folder, state)
        return replies

    def _body(self, request: ChatRequest) -> dict:
        payload = dict(self.live._payload(request))
        extra = payload.pop("extra_body", None)  # the client merges it into the JSON body; a file line must too
        if extra:
            payload.update(extra)
        return payload

    def _load_or_create(self, folder: Path, unique: dict[str, ChatRequest]) -> dict:
        state_path = folder / "state.json"
        if state_path.exists():
            state = json.loads(state_path.read_text(encoding="utf-8"))
            if not state.get("done"):
                self._totals["resumed_batches"] += 1
                logger.info("resuming batch %s (%d parts)", folder.name, len(state["parts"]))
            return state
        folder.mkdir(parents=True, exist_ok=True)
        state = {"id": folder.name.removeprefix("batch-"), "model": self.model_name, "submitter": self.submitter.name,
                 "requests": len(unique), "created": time.time(), "done": False, "parts": []}
        lines = (json.dumps(batch_line(key, self._body(request)), ensure_ascii=False) + "\n"
                 for key, request in unique.items())
        for group in split_lines(lines, self.max_requests, self.max_bytes):
            self._add_part(folder, state, group, round_=1)
        self._save(folder, state)  # the parts exist before anything is submitted
        return state

    def _add_part(self, folder: Path, state: dict, lines: list[str], round_: int) -> dict:
        name = f"part-{len(state['parts']):03d}"
        atomic_write_text(folder / f"{name}.jsonl", "".join(lines))
        part = {"name": name, "round": round_, "requests": len(lines), "job": None, "status": "pending"}
        state["parts"].append(part)
        return part

    def _save(self, folder: Path, state: dict) -> None:
        atomic_write_text(folder / "state.json", json.dumps(state, indent=1))

    def _run(self, folder: Path, state: dict, unique: dict[str, ChatRequest]) -> dict[str, ChatResponse]:
        results: dict[str, ChatResponse] = {}
        for part in state["parts"]:
            if part["status"] == "collected":
                results.update(self._read_results(folder / f"{part['name']}.results.jsonl"))
        while True:
            open_parts = [p for p in state["parts"] if p["status"] != "collected"]
            if not open_parts:
                break
            active = sum(1 for p in open_parts if p["status"] == "submitted")
            for part in open_parts:
                if part["status"] == "pending" and active < self.submitter.max_active:
                    tag = f"synthllm-{state['id']}-{part['name']}"
                    job = self.submitter.find(tag)
                    if job is None:
                        job = self.submitter.submit(folder / f"{part['name']}.jsonl", tag)
                        self._totals["submissions"] += 1
                        logger.info("batch %s: submitted %s (%d requests, round %d)", state["id"], part["name"],
                                    part["requests"], part["round"])
                    part["job"], part["status"] = job, "submitted"
                    self._save(folder, state)  # the job id is on disk before we wait for it
                    active += 1
            progressed = False
            for part in [p for p in open_parts if p["status"] == "submitted"]:
                status = self.submitter.poll(part["job"])
                if status.state == "running":
                    continue
                self._collect(folder, state, part, status, unique, results)
                progressed = True
            if not progressed and any(p["status"] != "collected" for p in state["parts"]):
                time.sleep(self.poll_interval)
        missing = [key for key in unique if key not in results]
        for key in missing:  # cannot happen unless a state file was edited: never return a short list
            results[key] = ChatResponse(None, finish_reason="error", error="no reply in the batch's output")
        return results

    def _collect(self, folder: Path, state: dict, part: dict, status: JobStatus,
                 unique: dict[str, ChatRequest], results: dict[str, ChatResponse]) -> None:
        keys = [record["custom_id"] for record in iter_jsonl(folder / f"{part['name']}.jsonl")]
        wanted = set(keys)
        got: dict[str, ChatResponse] = {}
        retry_reasons: dict[str, str] = {}
        for line in self.submitter.collect(part["job"]):
            key = line.get("custom_id")
            if key not in wanted or key in got:
                continue
            reply, retryable = self._read_line(line)
            if reply.ok or not retryable:
                got[key] = reply
            else:
                retry_reasons[key] = reply.error or "failed"
        missing = [key for key in keys if key not in got]
        part_detail = status.detail or "ended"
        if missing:
            logger.warning("batch %s: %s ended (%s) with %d of %d requests unanswered", state["id"], part["name"],
                           part_detail, len(missing), len(keys))
        if missing and part["round"] < self.max_rounds:
            lines = [json.dumps(batch_line(key, self._body(unique[key])), ensure_ascii=False) + "\n"
                     for key in missing]
            for group in split_lines(lines, self.max_requests, self.max_bytes):
                self._add_part(folder, state, group, round_=part["round"] + 1)
        else:
            for key in missing:
                reason = retry_reasons.get(key, f"no reply: the batch job ended ({part_detail})")
                got[key] = ChatResponse(None, finish_reason="error",
                                        error=f"{reason} (after {part['round']} batch submissions)")
        atomic_write_text(folder / f"{part['name']}.results.jsonl",
                          jsonl_text({"custom_id": key, **dataclasses.asdict(reply)} for key, reply in got.items()))
        part["status"], part["ended"], part["answered"] = "collected", part_detail, len(got)
        self._save(folder, state)
        results.update(got)

    @staticmethod
    def _read_results(path: Path) -> dict[str, ChatResponse]:
        fields = {f.name for f in dataclasses.fields(ChatResponse)}
        return {record["custom_id"]: ChatResponse(**{k: v for k, v in record.items() if k in fields})
                for record in iter_jsonl(path)}

    def _read_line(self, line: dict) -> tuple[ChatResponse, bool]:
        """A batch output line as (response, whether a failure is worth re-submitting)."""
        response = line.get("response") or {}
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        if status == 200 and isinstance(body, dict):
            try:
                reply = self._to_response(body)
            except Exception as exc:  # noqa: BLE001  (an unreadable line fails that request only)
                return ChatResponse(None, finish_reason="error", error=f"unreadable batch reply: {exc}"), True
            return reply, False
        error = line.get("error")
        if not error and isinstance(body, dict):
            error = body.get("error")
        message = _error_text(error) or f"HTTP {status}"
        retryable = status == 0 or status in _RETRYABLE or status >= 500
        return ChatResponse(None, finish_reason="error", error=f"batch line failed, HTTP {status}: {message}"), retryable

    def _to_response(self, body: dict) -> ChatResponse:
        import openai.types.chat

        completion = openai.types.chat.ChatCompletion.model_validate(body)
        try:
            return self.live._to_response(completion)  # the live path's reading of a completion
        except Exception as exc:  # its _Final / _Retryable: the reason is the message
            return ChatResponse(None, finish_reason="error", error=getattr(exc, "reason", str(exc)))

    def close(self) -> None:
        """Delete the files of finished batches (their state.json stays as the record) and close the client.

        Jobs still running (a run stopped while waiting) are left to finish: the next run collects them.
        """
        for state_path in self.state_dir.glob("batch-*/state.json"):
            try:
                done = json.loads(state_path.read_text(encoding="utf-8")).get("done")
            except (OSError, ValueError):
                continue
            if done:
                for path in state_path.parent.glob("part-*"):
                    path.unlink(missing_ok=True)
        self.live.close()


def _error_text(error) -> str:
    if error is None:
        return ""
    if isinstance(error, dict):
        inner = error.get("error", error)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner.get("code") or inner)
        return str(inner)
    return str(error)


class OpenAIBatchSubmitter:
    """The OpenAI Batch API (``/v1/files`` + ``/v1/batches``) of any compatible provider.

    Parameters
    ----------
    base_url : the provider's URL ending in ``/v1``; None for OpenAI.
    api_key_env : environment variable holding the key (placeholder ``EMPTY`` for local servers).
    completion_window : the window the provider promises (``"24h"`` at OpenAI).
    poll_interval : seconds between polls.
    timeout, max_retries : the ``openai`` client's per-call timeout and retries.
    """

    name = "openai"
    max_active = 1_000

    def __init__(self, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 completion_window: str = "24h", poll_interval: float = 30.0, timeout: float = 120.0,
                 max_retries: int = 5):
        try:
            import openai
        except ImportError:
            raise MissingDependency("batch mode needs the openai client: pip install 'synthllm[openai]'") from None
        api_key = os.environ.get(api_key_env)
        if not api_key:
            if base_url is None:
                raise ValueError(f"OpenAI's API needs a key: set the environment variable {api_key_env}")
            api_key = "EMPTY"
        self.base_url = base_url
        self.completion_window = completion_window
        self.poll_interval = poll_interval
        self._openai = openai
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)

    def _call(self, what: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except self._openai.APIConnectionError as exc:
            raise BackendUnavailable(f"{self.base_url or 'OpenAI API'}: {what} failed: cannot connect ({exc})") from None
        except self._openai.APIStatusError as exc:
            raise BackendUnavailable(f"{self.base_url or 'OpenAI API'}: {what} failed: "
                                     f"HTTP {exc.status_code}: {exc.message}") from None

    def submit(self, path: Path, tag: str) -> dict:
        with open(path, "rb") as handle:
            uploaded = self._call("uploading a request file", self._client.files.create, file=handle, purpose="batch")
        batch = self._call("creating a batch", self._client.batches.create, input_file_id=uploaded.id,
                           endpoint=ENDPOINT, completion_window=self.completion_window,
                           metadata={"synthllm_part": tag})
        return {"batch_id": batch.id, "input_file_id": uploaded.id}

    def find(self, tag: str) -> dict | None:
        page = self._call("listing batches", self._client.batches.list, limit=100)
        for batch in page.data:
            if (batch.metadata or {}).get("synthllm_part") == tag and batch.status not in (
                    "failed", "expired", "cancelling", "cancelled"):
                return {"batch_id": batch.id, "input_file_id": batch.input_file_id}
        return None

    def poll(self, job: dict) -> JobStatus:
        batch = self._call("polling a batch", self._client.batches.retrieve, job["batch_id"])
        job["output_file_id"], job["error_file_id"] = batch.output_file_id, batch.error_file_id
        if batch.status in ("validating", "in_progress", "finalizing", "cancelling"):
            return JobStatus("running", batch.status)
        detail = batch.status
        errors = getattr(getattr(batch, "errors", None), "data", None)
        if errors:
            detail += ": " + "; ".join(str(e.message) for e in errors[:3])
        return JobStatus("ended", detail)

    def collect(self, job: dict) -> Iterator[dict]:
        for file_id in (job.get("output_file_id"), job.get("error_file_id")):
            if not file_id:
                continue
            text = self._call("downloading batch results", self._client.files.content, file_id).text
            for line in text.splitlines():
                if line.strip():
                    yield json.loads(line)


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (``/proc/PID/stat`` field 22), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


class VLLMRunBatchSubmitter:
    """vLLM's batch runner on this machine, one detached job per request file.

    Parameters
    ----------
    model : model folder (or hub id) vLLM loads.
    served_name : the model name in the request bodies.
    python : interpreter with vLLM (see :func:`synthllm.llm.vllm_server.find_vllm_python`).
    args : extra engine arguments (``llm.vllm_args``, e.g. ``--enforce-eager``).
    kv_cache_gb : ``VLLM_CPU_KVCACHE_SPACE`` unless the environment sets it.
    env : extra environment variables.
    poll_interval : seconds between polls.

    A job is ``python -m vllm.entrypoints.openai.run_batch -i part.jsonl -o
    part.out.jsonl.tmp ...`` followed by a rename to ``part.out.jsonl``, in its
    own session: a killed synthllm does not take it down (as a provider's batch
    goes on), and the next run finds it by its pid and start time, or its
    finished output. One job runs at a time (they share the machine).
    """

    name = "vllm"
    max_active = 1

    def __init__(self, model: str, served_name: str, python: str | None = None, args: Sequence[str] = (),
                 kv_cache_gb: float | None = 2.0, env: dict | None = None, poll_interval: float = 2.0):
        from .vllm_server import find_vllm_python, vllm_env

        self.model, self.served_name = model, served_name
        self.python = python or find_vllm_python()
        self.args = list(args)
        self._args: list[str] | None = None  # with what the CPU build needs, found at the first submission
        self.env = vllm_env(kv_cache_gb, env)
        self.poll_interval = poll_interval

    def submit(self, path: Path, tag: str) -> dict:
        from .vllm_server import engine_args, probe_vllm

        if self._args is None:
            self._args = engine_args(self.args, self.model, probe_vllm(self.python))
        output = path.with_suffix(".out.jsonl")
        log = path.with_suffix(".log")
        command = [self.python, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(path),
                   "-o", f"{output}.tmp", "--model", self.model, "--served-model-name", self.served_name, *self._args]
        script = 'tmp="$1"; out="$2"; shift 2; "$@" && mv "$tmp" "$out"'
        with open(log, "ab") as handle:
            process = subprocess.Popen(["sh", "-c", script, "sh", f"{output}.tmp", str(output), *command],
                                       stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                       env=self.env, start_new_session=True)
        return {"pid": process.pid, "started": _process_start(process.pid), "output": str(output), "log": str(log)}

    def find(self, tag: str) -> dict | None:
        return None  # a job is written down right after its process starts; nothing to look up

    def poll(self, job: dict) -> JobStatus:
        if Path(job["output"]).exists():
            return JobStatus("ended", "completed")
        started = _process_start(job["pid"])
        if started is not None and started == job.get("started"):
            if _is_zombie(job["pid"]):  # our own child that ended: reap it
                _reap(job["pid"])
                return self.poll(job)
            return JobStatus("running")
        from .vllm_server import _log_tail

        return JobStatus("ended", "failed: the vLLM batch runner ended without output; its log ends with:\n"
                         + _log_tail(Path(job["log"]), 1500))

    def collect(self, job: dict) -> Iterator[dict]:
        output = Path(job["output"])
        if output.exists():
            yield from iter_jsonl(output)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
