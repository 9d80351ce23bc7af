"""Benchmark of the OpenAI-compatible backend's own cost.

(a) Framework overhead: the same prompts, the same concurrency, the same
    instantly answering server (``python -m synthllm.llm.fault_proxy`` with no
    upstream, in its own process), sent once by a bare ``AsyncOpenAI`` loop
    with a semaphore and once by :class:`OpenAIBackend` (in its executor-sized
    batches). Target: synthllm throughput >= 0.95 of the bare loop.
(b) Bookkeeping cost per request: the real Level-1 stage run by the real
    executor (templating via ``build()``, ``ChatRequest`` and cache key,
    response-cache get/put, ``parse()``, shard write) against a
    ``ScriptedBackend`` that answers at once with a fixed, well-formed reply.
    Target: <= 50 us per request. A second run over the same cache measures
    the all-cached path.
(c) Optional (``--real-server``): (a) against a real ``transformers serve``
    running the embedded SmolLM2 model, where the model dominates.
(d) Optional (``--ray-budget``): the cost of the cluster-wide budget used
    under Ray (a lease from an async Ray actor per request,
    :mod:`synthllm.executors.ray_budget`): the same backend and server with
    and without ``shared_budget``, rounds interleaved, on a local Ray.

Run::

    nice -n 5 python bench/bench_backend.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from openai import AsyncOpenAI

from synthllm.llm.base import ChatRequest, Sampling
from synthllm.llm.cache import ResponseCache
from synthllm.llm.openai_backend import OpenAIBackend
from synthllm.llm.scripted import ScriptedBackend

LEVEL1_REPLY = "\n".join(
    f"<Q{i}>\nQuestion: A shop sells {i + 2} pencils for ${i + 3}. How much do {3 * i} pencils cost?\n"
    f"Orig_tag:<newly_created>\nLevel:<middle_school>\n</Q{i}>" for i in range(1, 4))


def start_instant_server() -> tuple[subprocess.Popen, str]:
    """The fault proxy with no upstream and no faults, in its own process; returns (process, base URL)."""
    process = subprocess.Popen([sys.executable, "-m", "synthllm.llm.fault_proxy"], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    return process, line.split()[4]


def start_transformers_server() -> tuple[subprocess.Popen, str, str]:
    """``transformers serve`` pinned to the embedded model; returns (process, base URL, model id)."""
    import socket

    from synthllm.llm.embedded import resolve_model_path

    folder = str(resolve_model_path())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "transformers.cli.transformers", "serve", "--host", "127.0.0.1",
                                "--port", str(port), "--device", "cpu", folder],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    return process, f"http://127.0.0.1:{port}/v1", folder


class RawLoop:
    """The baseline: a bare AsyncOpenAI client, a semaphore, ``asyncio.gather``."""

    def __init__(self, base_url: str, model: str, concurrency: int):
        self.loop = asyncio.new_event_loop()
        self.model = model
        self.concurrency = concurrency
        self.client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)

    async def _one(self, semaphore: asyncio.Semaphore, request: ChatRequest) -> tuple[str, int, int]:
        sampling = request.sampling
        async with semaphore:
            reply = await self.client.chat.completions.create(
                model=self.model, messages=request.message_dicts(), max_tokens=sampling.max_tokens,
                temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed)
        return reply.choices[0].message.content, reply.usage.prompt_tokens, reply.usage.completion_tokens

    async def _all(self, requests: list[ChatRequest]) -> list:
        semaphore = asyncio.Semaphore(self.concurrency)
        return await asyncio.gather(*(self._one(semaphore, r) for r in requests))

    def run(self, requests: list[ChatRequest]) -> list:
        return self.loop.run_until_complete(self._all(requests))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


def run_backend(backend: OpenAIBackend, requests: list[ChatRequest]) -> list:
    """Send ``requests`` the way the executor does: in the backend's preferred batches."""
    size = backend.preferred_batch_size
    replies = []
    for start in range(0, len(requests), size):
        replies.extend(backend.generate(requests[start:start + size]))
    return replies


def compare_with_raw(base_url: str, model: str, requests: list[ChatRequest], concurrency: int, rounds: int) -> dict:
    """Throughput (requests/s) and client CPU (us/request) of the bare loop and of OpenAIBackend, interleaved."""
    raw = RawLoop(base_url, model, concurrency)
    backend = OpenAIBackend(model, base_url=base_url, api_key_env="SYNTHLLM_BENCH_NO_KEY",
                            max_concurrency=concurrency)
    warm = requests[: min(len(requests), 2 * concurrency)]
    raw.run(warm)
    run_backend(backend, warm)
    figures = {"raw": [], "synth": [], "raw_cpu": [], "synth_cpu": []}
    for _ in range(rounds):
        for name, send in (("raw", raw.run), ("synth", lambda batch: run_backend(backend, batch))):
            started, cpu = time.perf_counter(), time.process_time()
            replies = send(requests)
            figures[name].append(len(requests) / (time.perf_counter() - started))
            figures[f"{name}_cpu"].append((time.process_time() - cpu) / len(requests) * 1e6)
        assert all(r.ok for r in replies), [r.error for r in replies if not r.ok][:3]
    raw.close()
    backend.close()
    return figures


def compare_budget(base_url: str, requests: list[ChatRequest], concurrency: int, rounds: int) -> dict:
    """Throughput (requests/s) of OpenAIBackend without and with a Ray budget actor's leases, interleaved."""
    import ray

    from synthllm.executors.ray_budget import RayBudget, cluster_budget

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        actor = cluster_budget("bench-budget", concurrency)
        backends = {name: OpenAIBackend("bench", base_url=base_url, api_key_env="SYNTHLLM_BENCH_NO_KEY",
                                        max_concurrency=concurrency, shared_budget=budget)
                    for name, budget in (("plain", None), ("budget", RayBudget(actor)))}
        figures: dict[str, list[float]] = {name: [] for name in backends}
        for backend in backends.values():
            run_backend(backend, requests[: 2 * concurrency])  # warm-up
        for _ in range(rounds):
            for name, backend in backends.items():
                started = time.perf_counter()
                replies = run_backend(backend, requests)
                figures[name].append(len(requests) / (time.perf_counter() - started))
                assert all(r.ok for r in replies), [r.error for r in replies if not r.ok][:3]
        for backend in backends.values():
            backend.close()
    finally:
        ray.shutdown()
    return figures


def documents(count: int) -> list[dict]:
    """Records shaped like the corpus (about 1,500 characters of text each)."""
    paragraph = ("A ratio compares two quantities by division. If a recipe uses 3 cups of flour for every "
                 "2 cups of sugar, the ratio of flour to sugar is 3:2, which can be written as the fraction 3/2. ")
    return [{"id": f"doc-{i}", "text": f"Section {i}. " + paragraph * 8} for i in range(count)]


def _cpu_micros(function, count: int) -> float:
    """CPU time of ``function()`` in this process, in microseconds per item (immune to other load)."""
    started = time.process_time()
    function()
    return (time.process_time() - started) / count * 1e6


def config_for_bench():
    from synthllm.config import load_config

    return load_config(None, {})


def bookkeeping(records: int, shard_size: int, batch: int = 256) -> tuple[dict, dict]:
    """CPU microseconds per request of synthllm's own work, with an instantly answering backend.

    Returns (core, executor): ``core`` is the per-request path every backend
    call pays (ChatRequest, cache key, cache put and get in batches);
    ``executor`` is the real Level-1 stage through the real executor (fresh
    and all-cached runs) and the parts that are not synthllm's bookkeeping
    (the scripted stand-in model, the stage's own build and parse).
    """
    from synthllm.executors.local import LocalExecutor
    from synthllm.stages.level1 import Level1Questions
    from synthllm.store import RunStore

    docs = documents(records)
    stage = Level1Questions(Sampling(max_tokens=512, temperature=0.7))
    messages = [stage.build(d) for d in docs]
    backend = ScriptedBackend(lambda chat: LEVEL1_REPLY, model_name="instant", batch_size=batch)
    core: dict[str, float] = {}
    executor: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        cache = ResponseCache(Path(folder) / "core.sqlite3")
        requests: list[ChatRequest] = []
        core["ChatRequest"] = _cpu_micros(
            lambda: requests.extend(ChatRequest.from_messages(m, stage.sampling) for m in messages), records)
        keys: list[str] = []
        core["cache_key"] = _cpu_micros(lambda: keys.extend(r.cache_key("instant") for r in requests), records)
        replies: list = []
        model_stand_in = _cpu_micros(
            lambda: [replies.extend(backend.generate(requests[i:i + batch])) for i in range(0, records, batch)],
            records)
        core["cache put (batched)"] = _cpu_micros(
            lambda: [cache.put_many(("k" + keys[j], "instant", replies[j]) for j in range(i, min(i + batch, records)))
                     for i in range(0, records, batch)], records)
        hits: dict = {}
        core["cache get (batched)"] = _cpu_micros(
            lambda: [hits.update(cache.get_many("k" + k for k in keys[i:i + batch]))
                     for i in range(0, records, batch)], records)
        assert len(hits) == records
        cache.close()

        shards = [(f"shard-{start // shard_size:04d}", (lambda part=docs[start:start + shard_size]: part),
                   len(docs[start:start + shard_size])) for start in range(0, records, shard_size)]
        cache = ResponseCache(Path(folder) / "run.sqlite3")
        for label, run_dir in (("executor, fresh", "run1"), ("executor, all cached", "run2")):
            store = RunStore(Path(folder) / run_dir)
            counts = {}
            local = LocalExecutor(config_for_bench(), lambda: backend, cache)
            executor[label] = _cpu_micros(
                lambda: counts.update(local.run_model_stage(stage, shards, store)), records)
            assert counts["ok"] == records, counts
        cache.close()
        executor["of which scripted 'model'"] = model_stand_in
        executor["of which stage build()"] = _cpu_micros(lambda: [stage.build(d) for d in docs], records)
        executor["of which stage parse()"] = _cpu_micros(
            lambda: [stage.parse(d, [LEVEL1_REPLY]) for d in docs], records)
    return core, executor


def main() -> None:
    """Run (a), (b) and optionally (c); print figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=4000, help="records for the bookkeeping run")
    parser.add_argument("--real-server", action="store_true", help="also compare against transformers serve")
    parser.add_argument("--ray-budget", action="store_true", help="also measure the Ray cluster budget's cost")
    args = parser.parse_args()

    prompts = [ChatRequest.from_messages([{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}],
                                         Sampling(max_tokens=16)) for i in range(args.requests)]
    process, url = start_instant_server()
    try:
        rates = compare_with_raw(url, "bench", prompts, args.concurrency, args.rounds)
        budget = compare_budget(url, prompts, args.concurrency, args.rounds) if args.ray_budget else None
    finally:
        process.terminate()
        process.wait()
    paired = [synth / raw for synth, raw in zip(rates["synth"], rates["raw"])]
    raw_cpu, synth_cpu = statistics.median(rates["raw_cpu"]), statistics.median(rates["synth_cpu"])
    print(f"(a) instant server, {args.requests} requests, concurrency {args.concurrency}, {args.rounds} rounds "
          "(raw and synthllm alternate)")
    print(f"    raw AsyncOpenAI loop  : median {statistics.median(rates['raw']):6.1f} req/s, "
          f"rounds {' '.join(f'{r:.1f}' for r in rates['raw'])}")
    print(f"    synthllm backend      : median {statistics.median(rates['synth']):6.1f} req/s, "
          f"rounds {' '.join(f'{r:.1f}' for r in rates['synth'])}")
    print(f"    ratio synthllm/raw    : median of paired rounds {statistics.median(paired):.3f}, "
          f"rounds {' '.join(f'{r:.2f}' for r in paired)}  (target >= 0.95)")
    print(f"    client CPU per request: raw {raw_cpu:.0f} us, synthllm {synth_cpu:.0f} us, "
          f"ratio {synth_cpu / raw_cpu:.3f} (medians; the openai client itself dominates)")

    if budget is not None:
        paired = [leased / plain for leased, plain in zip(budget["budget"], budget["plain"])]
        print(f"(d) Ray cluster budget, same server and requests, {args.rounds} rounds (alternating)")
        print(f"    without budget: median {statistics.median(budget['plain']):6.1f} req/s; with a lease per "
              f"request: median {statistics.median(budget['budget']):6.1f} req/s")
        print(f"    ratio with/without: median of paired rounds {statistics.median(paired):.3f}, "
              f"rounds {' '.join(f'{r:.2f}' for r in paired)}")

    core, executor = bookkeeping(args.records, shard_size=500)
    print(f"(b) CPU per request, {args.records} requests, instant scripted backend, Level-1 prompts (~1.9k chars)")
    for label, micros in core.items():
        print(f"    {label:26s}: {micros:7.1f} us")
    total = sum(core.values())
    print(f"    {'bookkeeping total':26s}: {total:7.1f} us   ratio to the 50 us budget: {total / 50:.2f}"
          f" (target <= 1.00); ratio to the raw client's CPU per request: {total / raw_cpu:.3f}")
    for label, micros in executor.items():
        print(f"    {label:26s}: {micros:7.1f} us")

    if args.real_server:
        process, url, model = start_transformers_server()
        try:
            small = [ChatRequest.from_messages([{"role": "user", "content": f"Say the number {i}."}],
                                               Sampling(max_tokens=8)) for i in range(16)]
            real = compare_with_raw(url, model, small, concurrency=4, rounds=1)
        finally:
            process.terminate()
            process.wait()
        print("(c) transformers serve (SmolLM2-135M, CPU), 16 requests, max_tokens 8, concurrency 4")
        print(f"    raw {real['raw'][0]:.2f} req/s, synthllm {real['synth'][0]:.2f} req/s, "
              f"ratio {real['synth'][0] / real['raw'][0]:.3f}")

if __name__ == "__main__":
    main()
