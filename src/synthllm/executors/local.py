"""Running a model stage over shards in this process.

For each input shard not yet committed: build every request, take what the
response cache already has, send the rest to the backend in batches of its
preferred size (storing each batch's replies in the cache as soon as they
arrive, so Ctrl-C or a crash loses at most the batch in flight), parse, and
commit the shard with its counts. A re-run skips committed shards and replays
cached replies for the shard that was interrupted.

A shard in which some request failed for a transient reason (429, 5xx,
timeouts, connection errors after all retries) is *not* committed: its
finished replies are cached, the records count as ``pending`` and the next
run retries exactly those requests. Permanent failures (a prompt longer than
the context window, a 400) are committed as ``failed`` with their reason.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

from ..llm.base import Backend, ChatRequest, ChatResponse
from ..llm.cache import ResponseCache
from ..progress import StageProgress
from ..stages.base import ModelStage, Unparsable, Unsuitable
from ..store import RunStore, empty_counts
from .base import BackendFactory, Executor

ShardSource = Iterable[tuple[str, Callable[[], list[dict]], int]]
"""(shard name, loader of its records, number of records) triples."""


def stage_requests(stage: ModelStage, record: dict) -> list[ChatRequest]:
    """The ``n_samples`` requests of one input record (messages, sampling, prefill and the reply grammar)."""
    return stage.requests(record)


def answer_requests(requests: list[ChatRequest], backend: Backend, cache: ResponseCache | None,
                    on_batch: Callable[[list[ChatResponse]], None] | None = None) -> list[ChatResponse]:
    """Responses for ``requests``, from the cache where possible, else from the backend.

    Identical requests are sent once. New successful replies are cached batch by batch.
    """
    keys = [r.cache_key(backend.model_name) for r in requests]
    found = cache.get_many(keys) if cache is not None else {}
    missing: dict[str, ChatRequest] = {}
    for key, request in zip(keys, requests):
        if key not in found and key not in missing:
            missing[key] = request
    pending = list(missing.items())
    if found and on_batch is not None:
        on_batch([found[k] for k in dict.fromkeys(k for k in keys if k in found)])
    size = max(1, backend.preferred_batch_size)
    for start in range(0, len(pending), size):
        batch = pending[start:start + size]
        replies = backend.generate([request for _, request in batch])
        if cache is not None:
            cache.put_many((key, backend.model_name, reply) for (key, _), reply in zip(batch, replies))
        for (key, _), reply in zip(batch, replies):
            found[key] = reply
        if on_batch is not None:
            on_batch(replies)
    # a key asked twice in one shard is one call; each request still gets its own object
    return [dataclasses.replace(found[key]) for key in keys]


def parse_shard(stage: ModelStage, records: list[dict], replies: list[ChatResponse], counts: dict,
                stamp: dict, progress: StageProgress | None = None) -> tuple[list[dict], list[dict]]:
    """Parse one shard's replies (``n_samples`` per record, in order): (output records, rejects).

    Adds to ``counts``: ``in``, ``ok``, ``out``, ``unsuitable``, ``unparsable``,
    ``failed`` (permanent failures) and ``pending`` (transient failures, not
    rejected: the shard must not be committed while any are left).
    """
    outputs, rejects = [], []
    n = stage.n_samples
    for position, record in enumerate(records):
        mine = replies[position * n:(position + 1) * n]
        counts["in"] += 1
        record_id = stage.record_id(record)
        failed = [r for r in mine if not r.ok]
        if any(r.retryable for r in failed):
            counts["pending"] = counts.get("pending", 0) + 1
        elif failed:
            counts["failed"] += 1
            rejects.append({"id": record_id, "kind": "failed", "reason": failed[0].error, "raw": None})
        else:
            texts = [r.text or "" for r in mine]
            try:
                produced = stage.parse(record, texts)
            except Unsuitable as exc:
                counts["unsuitable"] += 1
                rejects.append({"id": record_id, "kind": "unsuitable", "reason": str(exc), "raw": texts})
            except Unparsable as exc:
                counts["unparsable"] += 1
                rejects.append({"id": record_id, "kind": "unparsable", "reason": str(exc), "raw": texts})
            else:
                counts["ok"] += 1
                counts["out"] += len(produced)
                outputs.extend({**item, **stamp} for item in produced)
        if progress:
            progress.advance(1)
    return outputs, rejects


def account(counts: dict, replies: list[ChatResponse], prices: dict | None,
            progress: StageProgress | None = None) -> None:
    """Add model calls, cache hits, tokens and cost of ``replies`` to ``counts``."""
    for reply in replies:
        if reply.cached:
            counts["cached"] += 1
        else:
            counts["model_calls"] += 1
            counts["prompt_tokens"] += reply.prompt_tokens
            counts["completion_tokens"] += reply.completion_tokens
            if prices:
                counts["cost"] = counts.get("cost", 0.0) + (
                    reply.prompt_tokens * prices.get("prompt", 0.0)
                    + reply.completion_tokens * prices.get("completion", 0.0)) / 1e6
    if progress:
        progress.tokens(sum(r.completion_tokens for r in replies if not r.cached))


def process_shard(stage: ModelStage, records: list[dict], backend: Backend, cache: ResponseCache | None,
                  extra_fields: dict | None = None, progress: StageProgress | None = None
                  ) -> tuple[list[dict], list[dict], dict]:
    """Run ``stage`` on one shard's records: (output records, rejects, counts).

    The unit of work of every executor. Output records get ``model`` and
    ``prompt_version`` (plus ``extra_fields``). Rejected inputs get ``kind``
    (unsuitable / unparsable / failed), ``reason`` and the raw replies.
    ``counts["pending"]`` > 0 means some requests failed for a transient
    reason: the caller must not commit the shard.
    """
    stamp = {"model": backend.model_name, stage.version_field: stage.prompt_version, **(extra_fields or {})}
    prices = getattr(backend, "prices", None)  # $ per 1M tokens, when the backend was given prices
    requests = [request for record in records for request in stage_requests(stage, record)]
    counts = {**empty_counts(), "pending": 0}
    replies = answer_requests(requests, backend, cache,
                              on_batch=lambda batch: account(counts, batch, prices, progress))
    outputs, rejects = parse_shard(stage, records, replies, counts, stamp, progress)
    return outputs, rejects, counts


def run_shard(stage: ModelStage, shard: str, load: Callable[[], list[dict]], store: RunStore, backend_of,
              cache: ResponseCache | None, extra_fields: dict | None = None,
              progress: StageProgress | None = None) -> tuple[dict, bool]:
    """Skip if committed, process, commit: one shard of a model stage, for every executor.

    ``backend_of`` is called only when the shard needs a model (a replay builds
    none). Returns ``(counts, committed)``; a shard with pending records
    (transient failures) is left uncommitted, to be retried by the next run.
    """
    if store.is_committed(stage.name, shard):
        return store.shard_counts(stage.name, shard), True
    outputs, rejects, counts = process_shard(stage, load(), backend_of(), cache, extra_fields, progress)
    if counts.get("pending"):
        return counts, False
    counts = {k: v for k, v in counts.items() if k != "pending"}
    store.commit_shard(stage.name, shard, outputs, rejects, counts)
    return counts, True


@dataclass
class _ShardInFlight:
    """A shard whose requests are out: what came back so far, and the futures still pending."""

    name: str
    size: int
    records: list[dict]
    keys: list[str]
    replies: dict[str, ChatResponse]
    futures: dict[concurrent.futures.Future, str]
    counts: dict


def run_pipelined(stage: ModelStage, todo, store: RunStore, backend, cache: ResponseCache | None,
                  extra_fields: dict | None = None, progress: StageProgress | None = None):
    """Model-stage shards over a backend that can ``submit`` (a server): yields ``(size, counts, committed)``.

    The requests of the next shards go out while earlier shards still wait
    for a slow request, up to ``2 * max_concurrency`` requests in flight, so
    the backend's own limit stays full; shards are still parsed and committed
    in order. Each reply is cached as it arrives, so an interrupted run repeats
    only the requests that were in flight.

    Measured (bench/bench_backend.py --pipeline, 2 s server latency, 128
    requests in shards of 32, ``max_concurrency`` 128): see bench/RESULTS.md.
    """
    limit = 2 * max(1, getattr(backend, "max_concurrency", backend.preferred_batch_size))
    stamp = {"model": backend.model_name, stage.version_field: stage.prompt_version, **(extra_fields or {})}
    prices = getattr(backend, "prices", None)
    window: deque[_ShardInFlight] = deque()
    in_flight, exhausted = 0, False
    try:
        while True:
            while not exhausted and in_flight < limit:  # admit the next shard
                item = next(todo, None)
                if item is None:
                    exhausted = True
                    break
                shard, load, size = item
                records = load()
                requests = [request for record in records for request in stage_requests(stage, record)]
                keys = [r.cache_key(backend.model_name) for r in requests]
                found = cache.get_many(keys) if cache is not None else {}
                counts = {**empty_counts(), "pending": 0}
                account(counts, list({k: found[k] for k in keys if k in found}.values()), prices, progress)
                missing = {k: r for k, r in zip(keys, requests) if k not in found}
                futures = dict(zip(backend.submit(list(missing.values())), missing))
                window.append(_ShardInFlight(shard, size, records, keys, found, futures, counts))
                in_flight += len(futures)
            if not window:
                return
            pending = [future for entry in window for future in entry.futures]
            if pending:
                concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for entry in window:  # collect and cache what came back, in any shard
                arrived = [(future, entry.futures[future]) for future in entry.futures if future.done()]
                for future, _key in arrived:
                    del entry.futures[future]
                replies = [(key, future.result()) for future, key in arrived]  # raises BackendUnavailable
                in_flight -= len(arrived)
                entry.replies.update(replies)
                if replies:
                    if cache is not None:
                        cache.put_many((key, backend.model_name, reply) for key, reply in replies)
                    account(entry.counts, [reply for _, reply in replies], prices, progress)
            while window and not window[0].futures:  # commit finished shards in order
                entry = window.popleft()
                replies = [dataclasses.replace(entry.replies[key]) for key in entry.keys]
                outputs, rejects = parse_shard(stage, entry.records, replies, entry.counts, stamp, progress)
                counts = entry.counts
                if not counts["pending"]:
                    counts = {k: v for k, v in counts.items() if k != "pending"}
                    store.commit_shard(stage.name, entry.name, outputs, rejects, counts)
                yield entry.size, counts, not entry.counts["pending"]
    finally:  # a stop, an open breaker or Ctrl-C: nothing may keep sending
        for entry in window:
            for future in entry.futures:
                future.cancel()


def prefetch(stage: ModelStage, shards: list, backend: Backend, cache: ResponseCache) -> int:
    """Put the replies to every uncached request of ``shards`` into the cache with one ``generate`` call.

    For batch backends (``batch_mode``: OpenAI's Batch API, ``vllm run-batch``), which are cheap
    per request but slow per call: the whole stage goes out as one job (the backend splits it into
    files and keeps the job ids, so a killed run polls the same job); the shards then replay from
    the cache as usual. Returns the number of requests sent.
    """
    requests = {}
    for _shard, load, _size in shards:
        for record in load():
            for request in stage_requests(stage, record):
                requests.setdefault(request.cache_key(backend.model_name), request)
    cached = cache.get_many(requests)
    missing = [(key, request) for key, request in requests.items() if key not in cached]
    if missing:
        replies = backend.generate([request for _, request in missing])
        cache.put_many((key, backend.model_name, reply) for (key, _), reply in zip(missing, replies))
    return len(missing)


def pending_shards(stage_name: str, shards: ShardSource, store: RunStore, this_run: dict,
                   progress: StageProgress | None = None, should_stop: Callable[[], bool] | None = None):
    """The shards still to run, for any executor.

    Committed shards are skipped and counted in ``this_run["resumed_records"]``;
    iteration ends early, with ``this_run["stopped"]`` set, once ``should_stop``
    says so.
    """
    for shard, load, size in shards:
        if store.is_committed(stage_name, shard):
            this_run["resumed_records"] += size
            if progress:
                progress.skip(size)
            continue
        if should_stop is not None and should_stop():
            this_run["stopped"] = True
            return
        yield shard, load, size


def new_this_run() -> dict:
    return {"model_calls": 0, "cached": 0, "resumed_records": 0, "pending": 0, "stopped": False}


class LocalExecutor(Executor):
    """Runs everything in this process; builds the backend once, when a shard first needs it."""

    def __init__(self, config, backend_factory: BackendFactory, cache: ResponseCache | None = None):
        super().__init__(config, backend_factory, config.cache_path)
        # opened now: a bad cache_path (a folder, a full disk) stops the run before any work
        self.cache = cache if cache is not None else ResponseCache(self.cache_path)
        self._backend: Backend | None = None

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from ..progress import console

            with console.status(f"loading model {self.config.llm.model} ..."):
                self._backend = self.backend_factory()
        return self._backend

    def map(self, fn, items, on_result=None, should_stop=None):
        results = [None] * len(items)
        for index, item in enumerate(items):
            if should_stop is not None and should_stop():
                break
            results[index] = fn(item)
            if on_result is not None:
                on_result(index, results[index])
        return results

    def run_model_stage(self, stage, shards, store, progress=None, extra_fields=None, should_stop=None) -> dict:
        this_run = new_this_run()
        todo = pending_shards(stage.name, shards, store, this_run, progress, should_stop)
        first = next(todo, None)
        if first is not None:
            todo = itertools.chain([first], todo)
            if getattr(self.backend, "batch_mode", False):  # one batch job for the whole stage, then a replay
                todo = list(todo)
                # the replies then arrive through the cache: the shards count them as `cached`
                this_run["batch_requests"] = prefetch(stage, todo, self.backend, self.cache)
                todo = iter(todo)
            if callable(getattr(self.backend, "submit", None)):
                results = run_pipelined(stage, todo, store, self.backend, self.cache, extra_fields, progress)
            else:
                results = ((size, *run_shard(stage, shard, load, store, lambda: self.backend, self.cache,
                                              extra_fields, progress)) for shard, load, size in todo)
            for size, counts, committed in results:
                this_run["model_calls"] += counts["model_calls"]
                this_run["cached"] += counts["cached"]
                if not committed:
                    this_run["pending"] += size
        return {**store.stage_counts(stage.name), "this_run": this_run}

    def describe_backend(self) -> dict | None:
        if self._backend is None:
            return None
        describe = getattr(self._backend, "describe", None)
        return describe() if callable(describe) else {"model": self._backend.model_name}

    def close(self) -> None:
        from ..llm.factory import given_backend

        if self._backend is not None and not isinstance(self.backend_factory, given_backend):
            self._backend.close()  # a backend the caller built and handed over is the caller's to close
        self._backend = None
        if self.cache is not None:
            self.cache.close()
            self.cache = None
