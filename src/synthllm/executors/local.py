"""Running a model stage over shards on this machine.

For each input shard not yet committed: build every request, take what the
response cache already has, send the rest to the backend in batches of its
preferred size (storing each batch's replies in the cache as soon as they
arrive, so Ctrl-C or a crash loses at most the batch in flight), parse, and
commit the shard with its counts. A re-run skips committed shards and replays
cached replies for the shard that was interrupted.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

from ..llm.base import Backend, ChatRequest, ChatResponse
from ..llm.cache import ResponseCache
from ..progress import StageProgress
from ..stages.base import ModelStage, Unparsable, Unsuitable
from ..store import RunStore, empty_counts

ShardSource = Iterable[tuple[str, Callable[[], list[dict]], int]]
"""(shard name, loader of its records, number of records) triples."""


def _requests_for(stage: ModelStage, record: dict) -> list[ChatRequest]:
    return stage.requests(record)  # messages, sampling, prefill and the reply grammar


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


def process_shard(stage: ModelStage, records: list[dict], backend: Backend, cache: ResponseCache | None,
                  extra_fields: dict | None = None, progress: StageProgress | None = None
                  ) -> tuple[list[dict], list[dict], dict]:
    """Run ``stage`` on one shard's records: (output records, rejects, counts).

    The unit of work of every executor: the local executor calls it in a loop,
    the Ray executor in its workers. Output records get ``model`` and
    ``prompt_version`` (plus ``extra_fields``). Rejected inputs get ``kind``
    (unsuitable / unparsable / failed), ``reason`` and the raw replies.
    """
    stamp = {"model": backend.model_name, stage.version_field: stage.prompt_version, **(extra_fields or {})}
    # $ per 1M tokens, when the backend was given prices (cost accounting per stage)
    prices = getattr(backend, "prices", None)
    requests: list[ChatRequest] = []
    for record in records:
        requests.extend(_requests_for(stage, record))
    counts = empty_counts()

    def account(replies: list[ChatResponse]) -> None:
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

    replies = answer_requests(requests, backend, cache, on_batch=account)
    outputs, rejects = [], []
    n = stage.n_samples
    for position, record in enumerate(records):
        mine = replies[position * n:(position + 1) * n]
        counts["in"] += 1
        record_id = stage.record_id(record)
        failed = [r for r in mine if not r.ok]
        if failed:
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
    return outputs, rejects, counts


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


def run_model_stage(stage: ModelStage, shards: ShardSource, store: RunStore, backend: Backend | None,
                    cache: ResponseCache | None, progress: StageProgress | None = None,
                    extra_fields: dict | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    """Run ``stage`` over every shard in ``shards``, committing each; returns the stage's summed counts.

    The counts are summed over all committed shards (including shards of
    earlier, interrupted runs); ``this_run`` says what this call did: model
    calls, cache hits, and input records skipped because already committed.
    ``should_stop`` is asked before each new shard; when it says yes the stage
    returns early with ``this_run["stopped"]`` set (committed work stays).
    ``backend`` may be ``None`` when every shard is committed already.
    """
    this_run = {"model_calls": 0, "cached": 0, "resumed_records": 0, "stopped": False}
    for shard, load, _size in pending_shards(stage.name, shards, store, this_run, progress, should_stop):
        outputs, rejects, counts = process_shard(stage, load(), backend, cache, extra_fields, progress)
        store.commit_shard(stage.name, shard, outputs, rejects, counts)
        this_run["model_calls"] += counts["model_calls"]
        this_run["cached"] += counts["cached"]
    return {**store.stage_counts(stage.name), "this_run": this_run}
