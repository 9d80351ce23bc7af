"""Does a run keep a server busy? The executor's requests in flight and throughput against a slow server.

A server with a fixed latency per request (the fault proxy with ``latency``,
no upstream: a scripted reply after the delay) gets the Level-1 stage over
``--docs`` documents in shards of ``--shard-size``, with ``max_concurrency``
requests allowed, three ways, in the same run:

- ``raw``: a bare ``AsyncOpenAI`` loop with a semaphore of ``max_concurrency``
  over all the requests at once (the baseline, from bench_backend.py);
- ``shard by shard``: the executor as it was before issue #13 (one shard's
  requests at a time: every shard waits for its slowest request), obtained by
  hiding the backend's ``submit``;
- ``pipelined``: the executor now (requests of later shards flow while a
  shard waits; shards still commit in order).

Printed: seconds, requests per second, the most requests the server had in
flight at once, and each row's throughput as a ratio of ``raw``. A second
table does the same with a slow minority: ``--hung`` requests take 10x the
latency (stragglers).

Run::

    python bench/bench_pipeline.py --latency 0.05 --latency 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]

from bench_backend import RawLoop, documents  # noqa: E402
from scripted import respond  # noqa: E402
from synthllm.config import load_config  # noqa: E402
from synthllm.executors.local import LocalExecutor, stage_requests  # noqa: E402
from synthllm.llm.base import Sampling  # noqa: E402
from synthllm.llm.fault_proxy import FaultProxy  # noqa: E402
from synthllm.llm.openai_backend import OpenAIBackend  # noqa: E402
from synthllm.stages.level1 import Level1Questions  # noqa: E402
from synthllm.store import RunStore  # noqa: E402


class ShardByShard:
    """The backend without ``submit``: the executor falls back to one shard's batch at a time."""

    def __init__(self, backend: OpenAIBackend):
        self._backend = backend
        self.model_name = backend.model_name
        self.preferred_batch_size = backend.preferred_batch_size

    def generate(self, requests):
        return self._backend.generate(requests)

    def close(self):
        pass


def run_executor(backend, stage, shards, folder: Path) -> float:
    executor = LocalExecutor(load_config(None, {"cache_path": str(folder / "cache.sqlite3")}), lambda: backend)
    started = time.perf_counter()
    counts = executor.run_model_stage(stage, shards, RunStore(folder / "run"))
    seconds = time.perf_counter() - started
    executor._backend = None  # the caller closes the backend
    executor.close()
    assert counts["ok"] == counts["in"] == sum(s[2] for s in shards), counts
    return seconds


def measure(latency: float, docs: int, shard_size: int, concurrency: int, slow_every: int | None) -> list[tuple]:
    stage = Level1Questions(Sampling(max_tokens=128, temperature=0.7, seed=0))
    records = documents(docs)
    shards = [(f"part-{i // shard_size:05d}", (lambda part=records[i:i + shard_size]: part),
               len(records[i:i + shard_size])) for i in range(0, docs, shard_size)]
    requests = [r for d in records for r in stage_requests(stage, d)]
    rows = []
    delay = (lambda n: latency * (10 if n % slow_every == 0 else 1)) if slow_every else latency
    with FaultProxy(None, responder=respond, latency=delay) as server:
        warm = RawLoop(server.url, "scripted", concurrency)  # connections and imports warm for everyone
        warm.run(requests[:8])
        warm.close()
        raw = RawLoop(server.url, "scripted", concurrency)
        server.max_in_flight = 0
        started = time.perf_counter()
        raw.run(requests)
        raw_seconds = time.perf_counter() - started
        raw_peak = server.max_in_flight
        raw.close()
        rows.append(("raw AsyncOpenAI", raw_seconds, raw_peak))
        for label, wrap in (("shard by shard", ShardByShard), ("pipelined", lambda b: b)):
            backend = OpenAIBackend("scripted", base_url=server.url, api_key_env="SYNTHLLM_BENCH_NO_KEY",
                                    max_concurrency=concurrency)
            server.max_in_flight = 0
            with tempfile.TemporaryDirectory() as folder:
                seconds = run_executor(wrap(backend), stage, shards, Path(folder))
            backend.close()
            rows.append((label, seconds, server.max_in_flight))
    return [(label, seconds, len(requests) / seconds, peak, raw_seconds / seconds) for label, seconds, peak in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, action="append", help="server seconds per request (repeatable)")
    parser.add_argument("--docs", type=int, default=128)
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--slow-every", type=int, default=6, help="every n-th request is a 10x straggler (0: none)")
    args = parser.parse_args()
    for slow in (None, args.slow_every or None):
        for latency in args.latency or [0.05, 2.0]:
            title = f"latency {latency:g} s" + (f", every {slow}th request 10x slower" if slow else "")
            print(f"\n{title}; {args.docs} requests in shards of {args.shard_size}; max_concurrency {args.concurrency}")
            print(f"{'':<18} {'seconds':>8} {'req/s':>8} {'peak in flight':>15} {'vs raw':>7}")
            for label, seconds, rate, peak, ratio in measure(latency, args.docs, args.shard_size, args.concurrency,
                                                             slow):
                print(f"{label:<18} {seconds:>8.2f} {rate:>8.1f} {peak:>15} {ratio:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
