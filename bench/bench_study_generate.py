"""Greedy answer generation for the study's accuracy: ``model.generate`` vs the backend's row-dropping loop.

The study grades greedy answers to GSM8K test problems generated through the
embedded backend (``synthllm.study.evaluate.generate_answers``). With
``model.generate`` a batch runs until its longest answer ends, and
SmolLM2-135M's answers run from ~90 tokens to endless loops, so finished rows
keep being computed. The backend's greedy path (``TransformersBackend._greedy_batch``)
drops each row at its end-of-sequence token. Both run in bf16 where the CPU has
it (the backend's own detection), on the same items (the study's first
accuracy items of ``bench/study_control.yaml``), in the same process,
alternating. A first pass with a long cap measures how long the answers are,
so that the study's ``max_new_tokens`` can be chosen from data.

    OMP_NUM_THREADS=1 python bench/bench_study_generate.py --items 50 --cap 256 --probe-cap 512
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def run(backend, items, cap: int, batch: int, drop: bool) -> dict:
    from synthllm.llm.base import ChatRequest, Sampling

    backend.drop_finished_rows = drop
    backend.preferred_batch_size = batch
    sampling = Sampling(max_tokens=cap, temperature=0.0, top_p=1.0, seed=0)
    requests = [ChatRequest.from_messages([{"role": "user", "content": i.question}], sampling) for i in items]
    cpu, wall = time.process_time(), time.perf_counter()
    replies = backend.generate(requests)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tokens = sum(r.completion_tokens for r in replies)
    return {"replies": replies, "tokens": tokens, "wall_s": wall, "cpu_s": cpu,
            "capped": sum(r.finish_reason == "length" for r in replies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--cap", type=int, default=256, help="max_new_tokens of the timed comparison")
    parser.add_argument("--probe-cap", type=int, default=512, help="cap of the answer-length pass (0: skip)")
    parser.add_argument("--baseline-batch", type=int, default=25, help="batch of model.generate (the old config)")
    parser.add_argument("--batch", type=int, default=50, help="batch of the row-dropping loop")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    import torch

    from synthllm.llm.embedded import TransformersBackend
    from synthllm.study.config import load_study_config
    from synthllm.study.data import load_benchmark, shuffled
    from synthllm.study.grading import is_correct

    config = load_study_config(REPO / "bench" / "study_control.yaml")
    items = shuffled(load_benchmark(config.eval.benchmarks[0]), config.eval.seed)[: args.items]
    backend = TransformersBackend(batch_size=args.batch)
    print(f"{len(items)} GSM8K test items (the study's accuracy sample); model {backend.model_name}, {backend.dtype}; "
          f"torch threads {torch.get_num_threads()}; cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    run(backend, items[:2], 8, 2, True)  # warm-up: first calls pay kernel set-up
    if args.probe_cap:
        probe = run(backend, items, args.probe_cap, args.batch, True)
        lengths = sorted(r.completion_tokens for r in probe["replies"])
        correct = [is_correct(r.text, i.final) for r, i in zip(probe["replies"], items)]
        right_lengths = [r.completion_tokens for r, c in zip(probe["replies"], correct) if c]
        ended = [r.completion_tokens for r in probe["replies"] if r.finish_reason == "stop"]
        print(f"answer lengths (cap {args.probe_cap}): median {statistics.median(lengths):.0f}, "
              f"ended {len(ended)}/{len(items)} (longest that ended: {max(ended, default=0)}), "
              + ", ".join(f"over {c}: {sum(n > c for n in lengths)}" for c in (128, 192, 256, 320, 384))
              + f"; correct {sum(correct)} (lengths {right_lengths})"
              + f"; {probe['tokens']} tokens in {probe['wall_s']:.0f} s wall, {probe['cpu_s']:.0f} s CPU")
    results = {"generate": [], "loop": []}
    for repeat in range(args.repeats):
        for name, batch, drop in (("generate", args.baseline_batch, False), ("loop", args.batch, True)):
            r = run(backend, items, args.cap, batch, drop)
            results[name].append(r)
            correct = sum(is_correct(x.text, i.final) for x, i in zip(r["replies"], items))
            print(f"run {repeat + 1} {name:8} (batch {batch}, cap {args.cap}): {r['tokens']} tokens, "
                  f"{r['wall_s']:.1f} s wall ({r['tokens'] / r['wall_s']:.1f} tokens/s), {r['cpu_s']:.1f} s CPU "
                  f"({r['tokens'] / r['cpu_s']:.1f} tokens/CPU-s), capped {r['capped']}, correct {correct}, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    same = sum(a.text == b.text for a, b in zip(results["generate"][0]["replies"], results["loop"][0]["replies"]))
    median = {k: (statistics.median(r["tokens"] / r["wall_s"] for r in v),
                  statistics.median(r["tokens"] / r["cpu_s"] for r in v),
                  statistics.median(r["wall_s"] for r in v)) for k, v in results.items()}
    print(f"identical answers: {same}/{len(items)}")
    print(f"median tokens/s: generate {median['generate'][0]:.1f}, loop {median['loop'][0]:.1f}, "
          f"ratio {median['loop'][0] / median['generate'][0]:.2f}; tokens/CPU-s: generate {median['generate'][1]:.1f}, "
          f"loop {median['loop'][1]:.1f}, ratio {median['loop'][1] / median['generate'][1]:.2f}; "
          f"time per {len(items)} answers: {median['generate'][2]:.0f} s -> {median['loop'][2]:.0f} s wall")


if __name__ == "__main__":
    main()
