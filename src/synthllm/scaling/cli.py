"""``synthllm fit RESULTS.csv``: fit a scaling law per model and forecast from it.

Bad input (an unreadable or malformed CSV, values the fit cannot handle, a
non-finite option, an output that cannot be written) prints one
``error: ...`` line and exits 2, through :mod:`synthllm.cliutil`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from synthllm.cliutil import fail, handle_errors
from synthllm.errors import InputError
from synthllm.scaling.fit import bootstrap_fit, fit_law, form_risk, rmsd_log
from synthllm.scaling.forecast import compare_models, plateau_point, predict_with_band, size_for_target
from synthllm.scaling.results import read_results_csv

__all__ = ["app", "fit"]


METRIC_HELP = "What the metric column holds: 'accuracy' (error = 100-acc, or 1-acc if all <= 1) or 'error'."
PLATEAU_HELP = "Report where one more doubling of data improves the metric by less than this (metric units)."


def _number(value: float) -> float | None:
    """JSON-safe float (inf becomes null)."""
    return float(value) if math.isfinite(value) else None


def _format_size(value: float) -> str:
    return "never" if not math.isfinite(value) else f"{value:.3g}"


@handle_errors
def fit(
    results_csv: Annotated[Path, typer.Argument(help="CSV with columns model, tokens|samples, metric.")],
    metric: Annotated[str, typer.Option(help=METRIC_HELP)] = "error",
    law: Annotated[str, typer.Option(help="'rectified' (B/(D_l+D^beta)+E) or 'vanilla' (B/D^beta+E).")] = "rectified",
    holdout_last: Annotated[
        int, typer.Option(help="Fit on all but each model's K largest sizes; report the error on those K.")
    ] = 0,
    plot: Annotated[Path | None, typer.Option(help="Write a log-log PNG of data, fits and confidence bands.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write parameters, uncertainties, RMSDs and forecasts as JSON.")
    ] = None,
    target: Annotated[
        float | None, typer.Option(help="Target in the metric's units: report the data size that reaches it.")
    ] = None,
    plateau_threshold: Annotated[float | None, typer.Option(help=PLATEAU_HELP)] = None,
    at: Annotated[list[float] | None, typer.Option(help="Forecast the metric at this data size (repeatable).")] = None,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap replicates for uncertainties and bands (0: none).")
    ] = 100,
    huber_delta: Annotated[
        float, typer.Option(help="Huber switch point on log residuals; 0 fits by least squares.")
    ] = 0.01,
    method: Annotated[
        str,
        typer.Option(
            help="'forecast' (tail-weighted, bounded floor; made for extrapolation), "
            "'multistart' (Huber, L-BFGS-B) or 'two-stage' (Lin et al.)."
        ),
    ] = "forecast",
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
) -> None:
    """Fit a scaling law to each model's (size, metric) points and forecast from it."""
    if law not in ("rectified", "vanilla"):
        fail(f"--law must be 'rectified' or 'vanilla', got {law!r}")
    if method not in ("forecast", "multistart", "two-stage"):
        fail(f"--method must be 'forecast', 'multistart' or 'two-stage', got {method!r}")
    if method == "two-stage" and law != "rectified":
        fail("--method two-stage is defined for --law rectified only")
    if holdout_last < 0 or bootstrap < 0 or huber_delta < 0:
        fail("--holdout-last, --bootstrap and --huber-delta must be >= 0")
    if plateau_threshold is not None and plateau_threshold <= 0:
        fail("--plateau-threshold must be > 0")
    for name, value in (("--target", target), ("--plateau-threshold", plateau_threshold),
                        ("--huber-delta", huber_delta), *(("--at", size) for size in at or [])):
        if value is not None and not math.isfinite(value):
            fail(f"{name} must be a finite number, got {value}")
    results = read_results_csv(results_csv, metric)
    delta = huber_delta or None
    forecast_sizes = np.array(sorted(at or []), dtype=float)
    fits, heldout, report = {}, {}, {}
    for model, (sizes, errors) in results.curves.items():
        n_fit = sizes.size - holdout_last
        if n_fit < 3:
            fail(
                f"{results_csv}: model {model!r} has {sizes.size} points; "
                f"fitting needs 3 after holding out {holdout_last}"
            )
        if law == "vanilla" and np.any(sizes[:n_fit] == 0):
            fail(
                f"{results_csv}: model {model!r} has a point at size 0, "
                "which the vanilla law cannot fit (use --law rectified)"
            )
        fit_method = method.replace("-", "_")
        result = fit_law(sizes[:n_fit], errors[:n_fit], law, method=fit_method, delta=delta)
        if bootstrap:
            bootstrap_fit(result, bootstrap, seed=seed)
        if np.count_nonzero(result.sizes > 0) > 4:  # bands that include the error of the law's form
            form_risk(result)
        fits[model] = result
        report[model] = _model_report(
            result, sizes[n_fit:], errors[n_fit:], results, forecast_sizes, target, plateau_threshold
        )
        if holdout_last:
            heldout[model] = (sizes[n_fit:], errors[n_fit:])
    comparison = None
    if target is not None and len(fits) > 1:
        outcome = compare_models({model: fit.law for model, fit in fits.items()}, float(results.to_error(target)))
        sizes_needed = {name: _number(size) for name, size in outcome.sizes.items()}
        comparison = {"target": target, "best": outcome.best, "sizes": sizes_needed}
    _print_table(report, results, law, target, plateau_threshold, holdout_last)
    if comparison is not None:
        best = comparison["best"]
        message = (
            f"Reaches {results.metric} {target:g} with the least data: {best} "
            f"({_format_size(comparison['sizes'][best])} {results.size_column})"
            if best
            else f"No model reaches {results.metric} {target:g}."
        )
        Console(highlight=False).print(message)
    if plot is not None:
        from synthllm.scaling.plot import plot_fits

        error_label = {100.0: "error (100 - accuracy)", 1.0: "error (1 - accuracy)"}.get(results.scale, "error")
        try:
            plot_fits(fits, plot, heldout=heldout, size_label=results.size_column, error_label=error_label)
        except OSError as error:
            raise InputError.at(plot, f"cannot write the plot ({error.strerror or error})") from None
        Console(highlight=False).print(f"plot: {plot}")
    if json_out is not None:
        document = {
            "file": str(results_csv),
            "law": law,
            "method": method,
            "huber_delta": delta,
            "metric": results.metric,
            "size_column": results.size_column,
            "bootstrap": bootstrap,
            "seed": seed,
            "models": report,
            "comparison": comparison,
        }
        try:
            json_out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as error:
            raise InputError.at(json_out, f"cannot write ({error.strerror or error})") from None
        Console(highlight=False).print(f"json: {json_out}")


def _model_report(result, heldout_sizes, heldout_errors, results, forecast_sizes, target, plateau_threshold) -> dict:
    """Everything the table and the JSON say about one model."""
    entry = {
        "params": result.law.params(),
        "n_fit": int(result.sizes.size),
        "rmsd_log_fit": result.rmsd_log,
        "rmsd_log_heldout": None,
        "heldout": [],
        "forecast": [],
    }
    if result.bootstrap is not None:
        entry["uncertainty"] = result.bootstrap.param_table()
    bands = {}
    for name, sizes in (("heldout", heldout_sizes), ("forecast", forecast_sizes)):
        if sizes.size:
            band = predict_with_band(result, sizes)
            bands[name] = (band["error"], band.get("low"), band.get("high"))
    if result.form_risk is not None:
        entry["form_risk"] = {"slope_per_doubling": result.form_risk.slope,
                              "residual_sd": result.form_risk.residual_sd,
                              "left_out_predictions": int(result.form_risk.distances.size)}
    if heldout_sizes.size:
        entry["rmsd_log_heldout"] = rmsd_log(bands["heldout"][0], heldout_errors)
    for name, sizes, observed in (("heldout", heldout_sizes, heldout_errors), ("forecast", forecast_sizes, None)):
        if not sizes.size:
            continue
        predicted, low, high = bands[name]
        for index, size in enumerate(sizes):
            row = {"size": float(size), "predicted": float(results.to_metric(predicted[index]))}
            if observed is not None:
                row["observed"] = float(results.to_metric(observed[index]))
            if low is not None:
                # Bands are in error; for accuracy the low error is the high accuracy.
                ends = sorted([float(results.to_metric(low[index])), float(results.to_metric(high[index]))])
                row["low"], row["high"] = ends
            entry[name].append(row)
    if target is not None:
        entry["size_for_target"] = _number(size_for_target(result.law, float(results.to_error(target))))
    if plateau_threshold is not None:
        plateau = plateau_point(result.law, plateau_threshold)
        entry["plateau"] = {
            "size": _number(plateau.size),
            "metric": float(results.to_metric(plateau.error)),
            "gain_per_doubling": plateau.gain_per_doubling,
        }
    entry["best_possible"] = float(results.to_metric(result.law.E))
    return entry


def _print_table(report, results, law, target, plateau_threshold, holdout_last) -> None:
    table = Table(title=f"{law} law, {results.metric} vs {results.size_column}")
    for column in ("model", "n", "beta", "E", "B", "D_l", "RMSD log (fit)"):
        table.add_column(column, justify="left" if column == "model" else "right")
    if holdout_last:
        table.add_column("RMSD log (held out)", justify="right")
    table.add_column(f"best {results.metric}", justify="right")
    if target is not None:
        table.add_column(f"{results.size_column} for {target:g}", justify="right")
    if plateau_threshold is not None:
        table.add_column(f"plateau (<{plateau_threshold:g}/doubling)", justify="right")
    for model, entry in report.items():
        params = entry["params"]
        beta = f"{params['beta']:.3f}"
        if "uncertainty" in entry:
            beta += f" ± {entry['uncertainty']['beta']['std']:.3f}"
        row = [
            model,
            str(entry["n_fit"]),
            beta,
            f"{params['E']:.4g}",
            f"{params['B']:.4g}",
            f"{params['D_l']:.4g}" if "D_l" in params else "-",
            f"{entry['rmsd_log_fit']:.4f}",
        ]
        if holdout_last:
            row.append(f"{entry['rmsd_log_heldout']:.4f}")
        row.append(f"{entry['best_possible']:.4g}")
        if target is not None:
            size = entry["size_for_target"]
            row.append(_format_size(size if size is not None else math.inf))
        if plateau_threshold is not None:
            plateau = entry["plateau"]
            size = plateau["size"] if plateau["size"] is not None else math.inf
            row.append(f"{_format_size(size)} ({plateau['metric']:.4g})")
        table.add_row(*row)
    console = Console(highlight=False)
    console.width = max(console.width, 150)  # the table is wide; don't squeeze it into 80 columns when piped
    console.print(table)
    for model, entry in report.items():
        for row in entry["forecast"]:
            band = f" [{row['low']:.4g}, {row['high']:.4g}]" if "low" in row else ""
            Console(highlight=False).print(
                f"{model}: {results.metric} at {row['size']:.3g} {results.size_column} = {row['predicted']:.4g}{band}"
            )


app = typer.Typer(help="Scaling-law fitting and forecasts.", no_args_is_help=True)
app.command("fit")(fit)
