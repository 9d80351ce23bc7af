"""Benchmark: the whole pipeline on the local executor against the Ray executor.

Both runs use the scripted backend (``tests/scripted.py``) on the packaged
OpenStax sample, each with a fresh response cache and run folder, so every
request goes to the backend. Two backend speeds:

* ``latency 0``: the scripted reply comes at once, so the figures are pure
  executor overhead (Ray: one Ray Data execution per step, with its actor
  pool started for it; shard loaders pickled to the workers; a result row per shard).
* ``latency L``: each batch of requests waits ``L`` seconds per request
  before replying, standing in for a remote model server that answers one
  request at a time (I/O-bound work, where Ray's workers overlap their waits).

Ray start-up (``ray.init``) is timed separately and not included in the run
times. The datasets of the two executors are compared byte for byte.

Run::

    nice -n 5 python bench/bench_ray.py --workers 2 --latency 0.02
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from scripted import respond  # noqa: E402

from synthllm import Pipeline, load_config  # noqa: E402
from synthllm.llm.scripted import ScriptedBackend  # noqa: E402

SAMPLE = ROOT / "src" / "synthllm" / "data" / "openstax_sample.jsonl"
MODEL_STAGES = ("concepts", "level1", "level2", "level3", "answers")


class SlowScriptedBackend(ScriptedBackend):
    """The scripted backend, waiting ``latency`` seconds per request like a one-at-a-time model server.

    Parameters
    ----------
    latency : seconds per request.
    """

    def __init__(self, latency: float):
        super().__init__(respond)
        self.latency = latency

    def generate(self, requests):
        time.sleep(self.latency * len(requests))
        return super().generate(requests)


def make_backend(latency: float):
    """A picklable factory target: the plain or the slow scripted backend."""
    return SlowScriptedBackend(latency) if latency else ScriptedBackend(respond)


def timed_run(config, out: Path, latency: float) -> tuple[float, int]:
    """Run the pipeline; returns (seconds, model calls)."""
    pipeline = Pipeline(config, out, backend_factory=functools.partial(make_backend, latency), show_progress=False)
    start = time.perf_counter()
    try:
        manifest = pipeline.run()
    finally:
        pipeline.close()
    seconds = time.perf_counter() - start
    return seconds, sum(manifest["stages"][s]["model_calls"] for s in MODEL_STAGES)


def main() -> None:
    """Print one row per (latency, executor): seconds, model calls, calls/s, speedup (local seconds / these)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=30, help="documents of the packaged sample (max 30)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (and Ray CPUs)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request of the slow backend")
    args = parser.parse_args()

    import ray

    # Ray's workers unpickle the factories by module name: bench/ and tests/ must be importable there
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "bench"), str(ROOT / "tests"),
                                                             os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    init_seconds = time.perf_counter() - start
    print(f"ray.init with {args.workers} CPUs: {init_seconds:.1f} s (not included below)")
    print(f"{'latency':>8} {'executor':>8} {'seconds':>8} {'calls':>6} {'calls/s':>8} {'speedup':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for latency in (0.0, args.latency):
            base = {"input": {"path": str(SAMPLE), "limit": args.docs}, "shard_size": 4,
                    "filter": {"enabled": False}, "level3": {"max_walks": args.docs},
                    "decontamination": {"use_shared_benchmarks": False}, "ray": {"num_workers": args.workers}}
            results = {}
            for executor in ("local", "ray"):
                tag = f"{executor}-{latency}"
                config = load_config(None, {**base, "executor": executor, "cache_path": str(tmp / f"{tag}.sqlite3")})
                seconds, calls = timed_run(config, tmp / tag, latency)
                results[executor] = (seconds, calls)
                ratio = results["local"][0] / seconds
                print(f"{latency:>8.3f} {executor:>8} {seconds:>8.2f} {calls:>6} {calls / seconds:>8.1f} "
                      f"{ratio:>8.2f}", flush=True)
            same = (tmp / f"ray-{latency}" / "dataset.jsonl").read_bytes() == \
                (tmp / f"local-{latency}" / "dataset.jsonl").read_bytes()
            print(f"{'':>8} datasets identical: {same}")
    ray.shutdown()


if __name__ == "__main__":
    main()
