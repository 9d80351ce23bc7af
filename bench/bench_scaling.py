"""Benchmark of synthllm.scaling against the published reference fits.

Run from the repository root (single BLAS thread, as the fitters use):

    nice -n 5 python bench/bench_scaling.py --out bench/results/scaling.md

Sections:
1. Lin et al. (2024), all 90 curves: in-sample RMSD under log (fit on sizes
   200..1,638,400) against the paper's own fitter, and extrapolation (fit on
   200..204,800, predict 409,600..1,638,400) for several fitters.
2. Chinchilla (Epoch AI's points): Epoch's full 4,500-start procedure, parameters
   against Epoch's published ones, CPU time.
3. SynthLLM Table 1: rectified-law reproduction, plateau and best-accuracy forecasts.
4. Timings: CPU seconds per curve fit (one core).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from synthllm.scaling import (
    EPOCH_CHINCHILLA_FIT,
    LIN_DATASETS,
    SYNTHLLM_TABLE1_ACCURACY,
    SYNTHLLM_TABLE1_TOKENS,
    fit_chinchilla,
    fit_law,
    load_chinchilla_epoch,
    load_lin_curves,
    load_lin_paper_rmsd,
    plateau_point,
    rmsd_log,
    size_for_target,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scaling"
TRAIN_MAX = 204_800

# name -> fit_law keyword arguments
FITTERS = {
    "multistart LSQ": {"law": "rectified", "delta": None},
    "multistart Huber 1e-2": {"law": "rectified", "delta": 1e-2},
    "multistart Huber 1e-3": {"law": "rectified", "delta": 1e-3},
    "two-stage (Lin et al.)": {"law": "rectified", "method": "two_stage"},
    "vanilla Huber 1e-3": {"law": "vanilla", "delta": 1e-3},
}


def timed_fit(sizes, errors, **kwargs):
    """Fit and return (FitResult, CPU seconds)."""
    start = time.process_time()
    fit = fit_law(sizes, errors, **kwargs)
    return fit, time.process_time() - start


def lin_benchmark(lines: list[str]) -> dict[str, list[float]]:
    paper = load_lin_paper_rmsd(DATA)
    per_curve = []
    cpu = {name: [] for name in FITTERS}
    for dataset in LIN_DATASETS:
        sizes, curves = load_lin_curves(DATA, dataset)
        in_sample = sizes > 0
        train = in_sample & (sizes <= TRAIN_MAX)
        test = sizes > TRAIN_MAX
        for model, losses in curves.items():
            row = {"dataset": dataset, "model": model, "paper": paper[(dataset, model)]}
            for name, kwargs in FITTERS.items():
                fit, seconds = timed_fit(sizes[in_sample], losses[in_sample], **kwargs)
                cpu[name].append(seconds)
                row[f"in {name}"] = fit.rmsd_log
                heldout_fit, _ = timed_fit(sizes[train], losses[train], **kwargs)
                row[f"out {name}"] = rmsd_log(heldout_fit.predict(sizes[test]), losses[test])
            per_curve.append(row)
            print(f"{dataset:9s} {model:40s} in {row['in multistart LSQ']:.5f} (paper {row['paper']:.5f})", flush=True)

    paper_values = np.array([row["paper"] for row in per_curve])
    lines += ["## 1. Lin et al. (2024): 90 curves", ""]
    lines += ["### In-sample RMSD under log (fit on all sizes 200..1,638,400)", ""]
    lines += ["| fitter | mean RMSD | median | curves <= paper | paper mean |", "|---|---|---|---|---|"]
    for name in FITTERS:
        values = np.array([row[f"in {name}"] for row in per_curve])
        share = np.mean(values <= paper_values + 1e-12)
        lines.append(
            f"| {name} | {values.mean():.5f} | {np.median(values):.5f} | {share:.1%} ({int(round(share * 90))}/90) "
            f"| {paper_values.mean():.5f} |"
        )
    lines += ["", "### Extrapolation: fit on 200..204,800, RMSD under log on 409,600..1,638,400", ""]
    lines += ["| fitter | mean held-out RMSD | median | max |", "|---|---|---|---|"]
    for name in FITTERS:
        values = np.array([row[f"out {name}"] for row in per_curve])
        lines.append(f"| {name} | {values.mean():.4f} | {np.median(values):.4f} | {values.max():.4f} |")
    lines += ["", "### Per curve", ""]
    header = "| dataset | model | paper in | LSQ in | LSQ out | Huber 1e-2 out | Huber 1e-3 out | two-stage out | vanilla out |"
    lines += [header, "|---|---|---|---|---|---|---|---|---|"]
    for row in per_curve:
        lines.append(
            f"| {row['dataset']} | {row['model']} | {row['paper']:.5f} | {row['in multistart LSQ']:.5f} "
            f"| {row['out multistart LSQ']:.4f} | {row['out multistart Huber 1e-2']:.4f} "
            f"| {row['out multistart Huber 1e-3']:.4f} | {row['out two-stage (Lin et al.)']:.4f} "
            f"| {row['out vanilla Huber 1e-3']:.4f} |"
        )
    lines.append("")
    return cpu


def chinchilla_benchmark(lines: list[str]) -> None:
    lines += ["## 2. Chinchilla (Epoch AI's extraction)", ""]
    lines += ["| data | E | A | B | alpha | beta | starts (converged) | CPU s | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    published = EPOCH_CHINCHILLA_FIT
    lines.append(
        f"| Epoch's published fit | {published['E']} | {published['A']} | {published['B']} "
        f"| {published['alpha']} | {published['beta']} | | | |"
    )
    for label, dropped in (("240 points (5 highest-loss dropped)", 5), ("all 245 points", 0)):
        n_params, tokens, loss = load_chinchilla_epoch(DATA, drop_highest_loss=dropped)
        wall, cpu = time.perf_counter(), time.process_time()
        fit = fit_chinchilla(n_params, tokens, loss)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        law = fit.law
        lines.append(
            f"| {label} | {law.E:.4f} | {law.A:.2f} | {law.B:.2f} | {law.alpha:.4f} | {law.beta:.4f} "
            f"| {fit.n_starts} ({fit.n_converged}) | {cpu:.1f} | {wall:.1f} |"
        )
        if dropped:
            checks = [abs(getattr(law, name) - published[name]) for name in ("E", "alpha", "beta")]
            ratios = [abs(getattr(law, name) / published[name] - 1) for name in ("A", "B")]
            summary = (
                f"max |diff| of E, alpha, beta = {max(checks):.4f} (limit 0.005); "
                f"max relative diff of A, B = {max(ratios):.1%} (limit 5%)"
            )
        print(label, law, f"cpu {cpu:.1f}s", flush=True)
    lines += ["", summary, ""]


def table1_benchmark(lines: list[str]) -> None:
    lines += ["## 3. SynthLLM Table 1 (rectified law, Huber 1e-2, error = 100 - accuracy)", ""]
    columns = " | ".join(f"{tokens:.3g}" for tokens in SYNTHLLM_TABLE1_TOKENS)
    lines += [f"| model | | {columns} | max abs diff |", "|---" * (len(SYNTHLLM_TABLE1_TOKENS) + 3) + "|"]
    forecasts = []
    for model, accuracy in SYNTHLLM_TABLE1_ACCURACY.items():
        fit = fit_law(SYNTHLLM_TABLE1_TOKENS, 100.0 - accuracy, delta=1e-2)
        predicted = 100.0 - fit.predict(SYNTHLLM_TABLE1_TOKENS)
        lines.append(f"| {model} | paper | " + " | ".join(f"{value:.1f}" for value in accuracy) + " | |")
        lines.append(
            f"| {model} | fit | " + " | ".join(f"{value:.2f}" for value in predicted)
            + f" | {np.max(np.abs(predicted - accuracy)):.3f} |"
        )
        law = fit.law
        plateaus = {threshold: plateau_point(law, threshold) for threshold in (1.0, 0.5)}
        forecasts.append(
            f"| {model} | {law.beta:.3f} | {100 - law.E:.2f} | {law.B / law.D_l:.1f} "
            f"| {plateaus[1.0].size:.3g} ({100 - plateaus[1.0].error:.1f}) "
            f"| {plateaus[0.5].size:.3g} ({100 - plateaus[0.5].error:.1f}) "
            f"| {size_for_target(law, law.E + 1.25):.3g} |"
        )
    lines += ["", "| model | beta | best accuracy (100 - E) | B/D_l | plateau <1 pt/doubling (acc) | plateau <0.5 pt/doubling (acc) | tokens to within 1.25 pt of best |"]
    lines += ["|---|---|---|---|---|---|---|", *forecasts, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    arguments = parser.parse_args()
    lines = ["# synthllm.scaling benchmark", "", "Command: `nice -n 5 python bench/bench_scaling.py --out bench/results/scaling.md`", ""]
    started = time.perf_counter()
    cpu = lin_benchmark(lines)
    chinchilla_benchmark(lines)
    table1_benchmark(lines)
    lines += ["## 4. CPU time per curve fit (one core, 14 points, in-sample fit)", ""]
    lines += ["| fitter | mean s | max s | ratio to two-stage |", "|---|---|---|---|"]
    baseline = np.mean(cpu["two-stage (Lin et al.)"])
    for name, values in cpu.items():
        lines.append(f"| {name} | {np.mean(values):.3f} | {np.max(values):.3f} | {np.mean(values) / baseline:.2f} |")
    lines += ["", f"Total wall time: {time.perf_counter() - started:.0f} s", ""]
    report = "\n".join(lines)
    print(report)
    if arguments.out:
        arguments.out.write_text(report)


if __name__ == "__main__":
    main()
