"""Benchmark of the managed vLLM backend and of batch mode on the same local vLLM.

(a) Managed backend vs raw loop: one managed vLLM server (``VLLMBackend``,
    started by synthllm); the same prompts at the same concurrency sent by a
    bare ``AsyncOpenAI`` loop with a semaphore and by the backend's
    ``generate``, rounds alternating. Output tokens/s; target: managed / raw
    >= 0.95 (median of paired rounds).
(b) Batch vs live, end to end, on the same prompts: *live* = start the
    managed server, answer every prompt, stop it; *batch* = ``BatchBackend``
    with vLLM's batch runner (``vllm run-batch``): write the request file,
    run the job (which loads the model itself), collect. Both include the
    engine's start, which is what a user waits for.

Prompts: short chat questions, ``max_tokens`` 128, seeded sampling at
temperature 0.7 (as the issue's engine comparison). Engine flags default to
``--enforce-eager`` (the tests' setting; drop it with ``--compiled``).

Run (repository root, main venv active, ``bash scripts/setup_vllm.sh`` done)::

    nice -n 5 python -u bench/bench_vllm.py --rounds 3 --prompts 32 --batch-prompts 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from synthllm.llm.base import ChatRequest, Sampling

TOPICS = ["fractions", "prime numbers", "the Pythagorean theorem", "linear equations", "probability", "percentages",
          "the area of a circle", "averages", "ratios", "exponents", "angles in a triangle", "simple interest",
          "negative numbers", "square roots", "volume of a cube", "unit conversion"]


def make_requests(n: int, max_tokens: int, seed: int = 0) -> list[ChatRequest]:
    sampling = Sampling(max_tokens=max_tokens, temperature=0.7, top_p=0.95, seed=seed)
    return [ChatRequest.from_messages([{"role": "user", "content": f"Write a short word problem about "
                                        f"{TOPICS[i % len(TOPICS)]} (number {i}) and solve it step by step."}],
                                      sampling, sample_index=i) for i in range(n)]


async def raw_loop(base_url: str, model: str, payloads: list[dict], concurrency: int) -> int:
    """Send ``payloads`` with a bare AsyncOpenAI client; returns the completion tokens."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="EMPTY", base_url=base_url, max_retries=0, timeout=600)
    gate = asyncio.Semaphore(concurrency)

    async def one(payload):
        async with gate:
            completion = await client.chat.completions.create(**payload)
            return completion.usage.completion_tokens

    try:
        return sum(await asyncio.gather(*(one(p) for p in payloads)))
    finally:
        await client.close()


def bench_managed_vs_raw(args, engine_args) -> None:
    from synthllm.llm.vllm_server import VLLMBackend

    requests = make_requests(args.prompts, args.max_tokens)
    started = time.perf_counter()
    backend = VLLMBackend(args.model, server_args=engine_args, max_concurrency=args.concurrency)
    print(f"(a) managed vLLM ({' '.join(engine_args) or 'compiled'}) ready in {time.perf_counter() - started:.0f} s; "
          f"{args.prompts} prompts x max_tokens {args.max_tokens}, concurrency {args.concurrency}, "
          f"{args.rounds} rounds (raw and managed alternate)", flush=True)
    payloads = [backend.client._payload(r) for r in requests]  # exactly what the backend sends
    try:
        backend.generate(make_requests(4, 8, seed=99))  # warm-up outside the measurement
        raw_rates, managed_rates = [], []
        for round_ in range(args.rounds):
            order = ("raw", "managed") if round_ % 2 == 0 else ("managed", "raw")
            for side in order:
                started = time.perf_counter()
                if side == "raw":
                    tokens = asyncio.run(raw_loop(backend.server.base_url, args.model, payloads, args.concurrency))
                    raw_rates.append(tokens / (time.perf_counter() - started))
                else:
                    replies = backend.generate(requests)
                    assert all(r.ok for r in replies), [r.error for r in replies if not r.ok][:3]
                    tokens = sum(r.completion_tokens for r in replies)
                    managed_rates.append(tokens / (time.perf_counter() - started))
    finally:
        backend.close()
    ratios = [m / r for m, r in zip(managed_rates, raw_rates)]
    print(f"    raw AsyncOpenAI loop : median {statistics.median(raw_rates):7.1f} output tok/s, rounds "
          + " ".join(f"{x:.1f}" for x in raw_rates))
    print(f"    managed VLLMBackend  : median {statistics.median(managed_rates):7.1f} output tok/s, rounds "
          + " ".join(f"{x:.1f}" for x in managed_rates))
    print(f"    ratio managed/raw    : median of paired rounds {statistics.median(ratios):.3f}, rounds "
          + " ".join(f"{x:.2f}" for x in ratios) + "  (target >= 0.95)", flush=True)


def bench_batch_vs_live(args, engine_args) -> None:
    from synthllm.llm.batch import BatchBackend, VLLMRunBatchSubmitter
    from synthllm.llm.openai_backend import OpenAIBackend
    from synthllm.llm.vllm_server import VLLMBackend, vllm_model_folder

    requests = make_requests(args.batch_prompts, args.max_tokens, seed=1)
    print(f"(b) {args.batch_prompts} prompts x max_tokens {args.max_tokens}, end to end including the engine's "
          "start", flush=True)
    started = time.perf_counter()
    with VLLMBackend(args.model, server_args=engine_args, max_concurrency=args.concurrency) as live:
        ready = time.perf_counter() - started
        replies = live.generate(requests)
    live_total = time.perf_counter() - started
    live_tokens = sum(r.completion_tokens for r in replies)
    assert all(r.ok for r in replies)
    with tempfile.TemporaryDirectory() as state_dir:
        submitter = VLLMRunBatchSubmitter(vllm_model_folder(args.model), args.model, args=engine_args,
                                          poll_interval=0.5)
        backend = BatchBackend(OpenAIBackend(args.model, base_url="http://127.0.0.1:1/v1"), submitter, state_dir)
        started = time.perf_counter()
        batch_replies = backend.generate(requests)
        batch_total = time.perf_counter() - started
        backend.close()
    batch_tokens = sum(r.completion_tokens for r in batch_replies)
    assert all(r.ok for r in batch_replies), [r.error for r in batch_replies if not r.ok][:2]
    print(f"    live  (managed server, concurrency {args.concurrency}): {live_total:6.1f} s end to end "
          f"(server start {ready:.1f} s), {live_tokens} tokens, {live_tokens / live_total:6.1f} output tok/s "
          f"end to end, {live_tokens / (live_total - ready):6.1f} after the start")
    print(f"    batch (vllm run-batch)                 : {batch_total:6.1f} s end to end, {batch_tokens} tokens, "
          f"{batch_tokens / batch_total:6.1f} output tok/s end to end")
    print(f"    ratio batch/live throughput (end to end): {(batch_tokens / batch_total) / (live_tokens / live_total):.3f}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compiled", action="store_true", help="let vLLM compile (slow start, faster decoding)")
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CACHE_ROOT", str(Path(tempfile.gettempdir()) / "synthllm-bench-vllm-cache"))
    engine_args = [] if args.compiled else ["--enforce-eager"]
    bench_managed_vs_raw(args, engine_args)
    if not args.skip_batch:
        bench_batch_vs_live(args, engine_args)


if __name__ == "__main__":
    main()
