"""Benchmark of synthllm.scaling against the published reference fits.

Run from the repository root (single BLAS thread, as the fitters use):

    nice -n 5 python bench/bench_scaling.py --out bench/results/scaling.md

    nice -n 5 python bench/bench_scaling.py --sensitivity   # only the forecast fit's constants

Sections:
1. Lin et al. (2024), all 90 curves: in-sample RMSD under log (fit on sizes
   200..1,638,400) against the paper's own fitter, and extrapolation (fit on
   200..204,800 or 0..204,800, predict 409,600..1,638,400) for several fitters;
   coverage of the forecast fit's 95% intervals (form_risk) on the held-out
   points; a second fit of each curve to check that the numbers repeat.
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
    form_risk,
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
    "forecast (default of the CLI)": {"law": "rectified", "method": "forecast"},
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
                with_zero = sizes <= TRAIN_MAX
                if "vanilla" not in name:
                    zero_fit, _ = timed_fit(sizes[with_zero], losses[with_zero], **kwargs)
                    row[f"out0 {name}"] = rmsd_log(zero_fit.predict(sizes[test]), losses[test])
                if name.startswith("forecast"):
                    for key, (model_fit, mask) in {"": (heldout_fit, train), "0": (zero_fit, with_zero)}.items():
                        risk = form_risk(model_fit)
                        low, high = risk.band(model_fit.predict(sizes[test]), sizes[test])
                        row[f"covered{key}"] = (low <= losses[test]) & (losses[test] <= high)
                        row[f"width{key}"] = np.log(high / low) / 2
                        # determinism: the same fit again, bit for bit
                        again = fit_law(sizes[mask], losses[mask], **kwargs)
                        row[f"same{key}"] = again.law == model_fit.law
                if name.startswith("two-stage"):
                    row["same two-stage"] = fit_law(sizes[train], losses[train], **kwargs).law == heldout_fit.law
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
    lines += ["", "### Extrapolation: fit on 200..204,800 (or 0..204,800), RMSD under log on 409,600..1,638,400", ""]
    lines += ["| fitter | D = 0 in fit | mean held-out RMSD | median | max | flan | gigaword | wmt19 |",
              "|---|---|---|---|---|---|---|---|"]
    for name in FITTERS:
        for key, label in (("out", "no"), ("out0", "yes")):
            if f"{key} {name}" not in per_curve[0]:
                continue
            values = np.array([row[f"{key} {name}"] for row in per_curve])
            by_set = " | ".join(f"{np.mean([row[f'{key} {name}'] for row in per_curve if row['dataset'] == d]):.4f}"
                                for d in LIN_DATASETS)
            lines.append(f"| {name} | {label} | {values.mean():.4f} | {np.median(values):.4f} | {values.max():.4f} "
                         f"| {by_set} |")
    lines += ["", "### Forecast intervals (form_risk, 95%) on the 270 held-out points", ""]
    lines += ["| D = 0 in fit | coverage | median half-width (log) | coverage at 2x / 4x / 8x the largest fitted size |",
              "|---|---|---|---|"]
    for key, label in (("", "no"), ("0", "yes")):
        covered = np.array([row[f"covered{key}"] for row in per_curve])
        widths = np.array([row[f"width{key}"] for row in per_curve])
        by_distance = " / ".join(f"{covered[:, i].mean():.1%}" for i in range(covered.shape[1]))
        lines.append(f"| {label} | {covered.mean():.1%} ({int(covered.sum())}/{covered.size}) "
                     f"| {np.median(widths):.3f} | {by_distance} |")
    same = [row["same"] and row["same0"] for row in per_curve]
    same_two_stage = [row["same two-stage"] for row in per_curve]
    lines += ["", f"Determinism: refitting gave bit-identical laws on {sum(same)}/90 curves (forecast, with and "
              f"without D = 0) and {sum(same_two_stage)}/90 (two-stage).", ""]
    lines += ["", "### Per curve", ""]
    header = ("| dataset | model | paper in | LSQ in | forecast out | forecast out (with 0) | LSQ out | Huber 1e-2 out "
              "| Huber 1e-3 out | two-stage out | vanilla out |")
    lines += [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    forecast_name = next(iter(FITTERS))
    for row in per_curve:
        lines.append(
            f"| {row['dataset']} | {row['model']} | {row['paper']:.5f} | {row['in multistart LSQ']:.5f} "
            f"| {row[f'out {forecast_name}']:.4f} | {row[f'out0 {forecast_name}']:.4f} "
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
    lines += ["Forecast fit (`method=\"forecast\"`, the CLI default) and its 95% interval (form_risk) at 1e13 tokens:", ""]
    lines += ["| model | max abs diff on the 6 points | accuracy at 1e13 | 95% interval |", "|---|---|---|---|"]
    for model, accuracy in SYNTHLLM_TABLE1_ACCURACY.items():
        fit = fit_law(SYNTHLLM_TABLE1_TOKENS, 100.0 - accuracy, method="forecast")
        predicted = fit.predict(np.array([1e13]))
        low, high = form_risk(fit).band(predicted, np.array([1e13]))
        diff = np.max(np.abs(100.0 - fit.predict(SYNTHLLM_TABLE1_TOKENS) - accuracy))
        lines.append(f"| {model} | {diff:.3f} | {100 - predicted[0]:.2f} | {100 - high[0]:.2f} - {100 - low[0]:.2f} |")
    lines.append("")


def sensitivity(lines: list[str]) -> None:
    """Held-out RMSD (log) of ``method="forecast"`` over a grid of its constants, with and without D = 0."""
    lines += ["## Sensitivity of the forecast fit to its constants (held-out RMSD under log, 90 curves)", ""]
    lines += ["| tail_weight | floor_prior | mean, no D = 0 | mean, with D = 0 |", "|---|---|---|---|"]
    curves = []
    for dataset in LIN_DATASETS:
        sizes, by_model = load_lin_curves(DATA, dataset)
        curves += [(sizes, losses) for losses in by_model.values()]
    for tail_weight in (0.5, 0.8):
        for prior in ((0.3, 0.1), (0.3, 0.25), (0.3, 0.5), (0.4, 0.1), (0.4, 0.25), (0.4, 0.5)):
            means = []
            for with_zero in (False, True):
                values = []
                for sizes, losses in curves:
                    train = (sizes <= TRAIN_MAX) & ((sizes > 0) | with_zero)
                    fit = fit_law(sizes[train], losses[train], method="forecast", tail_weight=tail_weight,
                                  floor_prior=prior)
                    values.append(rmsd_log(fit.predict(sizes[sizes > TRAIN_MAX]), losses[sizes > TRAIN_MAX]))
                means.append(np.mean(values))
            lines.append(f"| {tail_weight} | {prior} | {means[0]:.4f} | {means[1]:.4f} |")
            print(lines[-1], flush=True)
    lines.append("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--sensitivity", action="store_true",
                        help="only the grid of the forecast fit's constants (tail_weight, floor_prior)")
    arguments = parser.parse_args()
    if arguments.sensitivity:
        lines = ["Command: `nice -n 5 python bench/bench_scaling.py --sensitivity`", ""]
        sensitivity(lines)
        print("\n".join(lines))
        if arguments.out:
            arguments.out.write_text("\n".join(lines))
        return
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
