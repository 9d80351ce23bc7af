"""Benchmarks of the analysis part: Vendi score, mean pairwise cosine, GMM KL estimators.

Usage::

    nice -n 5 python bench/bench_analysis.py            # Vendi and cosine timings
    nice -n 5 python bench/bench_analysis.py --gmm      # plus the GMM study at its defaults

Every timing is the best of several runs, next to a baseline measured in the
same run (the reference vendi-score package's n×n kernel form, and the n×n
similarity matrix for the mean cosine).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from synthllm.analysis.diversity import mean_pairwise_cosine, vendi_score


def best_time(function, *args, repeat: int = 5) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def best_cpu_time(function, *args, repeat: int = 5) -> float:
    """Best process CPU time of ``repeat`` calls, in seconds (robust to other load on the machine)."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        function(*args)
        times.append(time.process_time() - start)
    return min(times)


def embeddings(rows: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """Correlated float32 unit rows shaped like MiniLM output."""
    rng = np.random.default_rng(seed)
    matrix = (rng.normal(size=(rows, dim)) @ rng.normal(size=(dim, dim)) * 0.1 + rng.normal(size=dim))
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix.astype(np.float32)


def bench_vendi() -> None:
    from vendi_score import vendi

    large = embeddings(10_000)
    ours_large = best_time(vendi_score, large)
    print(f"vendi_score (d×d form), n=10,000, d=384: {ours_large * 1000:.1f} ms wall, "
          f"{best_cpu_time(vendi_score, large) * 1000:.1f} ms CPU (value {vendi_score(large):.3f})")
    print(f"  reference vendi.score_dual (same d×d idea), n=10,000: {best_time(vendi.score_dual, large) * 1000:.1f} ms "
          f"wall, {best_cpu_time(vendi.score_dual, large) * 1000:.1f} ms CPU")
    # The reference runs in the input's precision: give it float64 for an exact comparison.
    small = embeddings(2_000, seed=1).astype(np.float64)
    ours_small = best_time(vendi_score, small)
    kernel_small = best_time(vendi.score_X, small, repeat=2)
    relative = abs(vendi_score(small) - vendi.score_X(small)) / vendi.score_X(small)
    print(f"n=2,000: ours {ours_small * 1000:.1f} ms vs reference n×n kernel form {kernel_small * 1000:.0f} ms "
          f"-> {kernel_small / ours_small:.0f}x faster; relative difference {relative:.1e}")


def bench_mean_cosine() -> None:
    vectors = embeddings(10_000, seed=2)

    def brute(matrix: np.ndarray) -> float:
        similarities = matrix @ matrix.T
        return float((similarities.sum() - np.trace(similarities)) / (len(matrix) * (len(matrix) - 1)))

    ours = best_time(mean_pairwise_cosine, vectors)
    baseline = best_time(brute, vectors, repeat=2)
    print(f"mean pairwise cosine, n=10,000: ours {ours * 1000:.1f} ms vs n×n matrix {baseline * 1000:.0f} ms "
          f"-> {baseline / ours:.0f}x faster; |difference| {abs(mean_pairwise_cosine(vectors) - brute(vectors)):.1e}")


def bench_gmm() -> None:
    from synthllm.analysis.gmm import gmm_study

    start = time.process_time()
    study = gmm_study()
    cpu = time.process_time() - start
    print(f"GMM study at defaults ({study['settings']['rounds']} rounds, {study['settings']['repeats']} repeats): "
          f"{cpu:.0f} s CPU")
    for param, sweep in study["sweeps"].items():
        row = "  ".join(f"{v}:{m:+.2f}" for v, m in zip(sweep["exact"]["values"], sweep["exact"]["mean"]))
        print(f"  gap vs {param} (exact): {row}")
    exact, histogram = study["noise"]["exact"], study["noise"]["histogram"]
    for name, entry in study["noise"].items():
        print(f"  {name:9s} run-to-run std median {entry['median']:.4f} rms {entry['rms']:.4f}; "
              f"error vs reference median |e| {entry['error_median_abs']:.4f} rms {entry['error_rms']:.4f}")
    print(f"  histogram/exact: median std {histogram['median'] / exact['median']:.1f}x, "
          f"median |error| {histogram['error_median_abs'] / exact['error_median_abs']:.1f}x")
    # Per-round values (kept in gmm.json): how closely each estimator follows the reference, round by round.
    for name in ("exact", "histogram"):
        pairs = [(np.concatenate(sweep[name]["rounds"]), np.concatenate(sweep["reference"]["rounds"]))
                 for sweep in study["sweeps"].values()]
        estimate, reference = (np.concatenate(part) for part in zip(*pairs))
        print(f"  {name:9s} per-round correlation with the reference: {np.corrcoef(estimate, reference)[0, 1]:.3f} "
              f"({estimate.size} rounds)")


def main() -> None:
    """Run the benchmarks and print the figures."""
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gmm", action="store_true", help="also run the GMM study at its defaults")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1: shared machine)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; BLAS threads {args.threads}")
    with threadpool_limits(args.threads):
        bench_vendi()
        bench_mean_cosine()
        if args.gmm:
            bench_gmm()


if __name__ == "__main__":
    main()
