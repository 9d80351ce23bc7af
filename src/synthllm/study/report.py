"""From the results table to the law and the forecast: fits.json, fit.png and study.html.

Every curve of the table (one per base model, training set and benchmark) is
fitted with the rectified law on all its sizes, 0 included, and with the
vanilla law on its non-zero sizes (the vanilla law has no value at D = 0),
through :mod:`synthllm.scaling` — the same code as ``synthllm fit``, so the
table's ``model, tokens|samples, metric`` columns fed to ``synthllm fit``
give the same parameters. With ``fit.holdout_last: K`` each law is fitted
without the K largest sizes and judged on them (the SynthLLM protocol: fit on
the smaller subsets, predict the largest). Forecasts: the plateau (where one
more doubling gains less than ``plateau_threshold``), the data that reaches
``target``, and the metric at ``forecast_at`` sizes.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np

from ..store import atomic_write_text

__all__ = ["fit_curves", "write_study_report"]


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fit_one(sizes: np.ndarray, errors: np.ndarray, law: str, fit_config) -> dict:
    from ..scaling import bootstrap_fit, fit_law, plateau_point, rmsd_log, size_for_target

    holdout = fit_config.holdout_last if sizes.size - fit_config.holdout_last >= 3 else 0
    n_fit = sizes.size - holdout
    if n_fit < 3:
        return {"law": law, "skipped": f"{sizes.size} points; a fit needs 3"}
    result = fit_law(sizes[:n_fit], errors[:n_fit], law, delta=fit_config.huber_delta or None)
    if fit_config.bootstrap:
        bootstrap_fit(result, fit_config.bootstrap, seed=0)
    entry = {"law": law, "fit": result, "params": result.law.params(), "n_fit": int(n_fit),
             "rmsd_log_fit": result.rmsd_log, "heldout": [], "rmsd_log_heldout": None}
    if result.bootstrap is not None:
        entry["uncertainty"] = result.bootstrap.param_table()
    if holdout:
        predicted = result.predict(sizes[n_fit:])
        entry["rmsd_log_heldout"] = rmsd_log(predicted, errors[n_fit:])
        entry["heldout"] = [{"size": float(s), "observed": float(o), "predicted": float(p)}
                            for s, o, p in zip(sizes[n_fit:], errors[n_fit:], predicted)]
    first = float(errors[0])
    threshold = fit_config.plateau_threshold or 0.01 * first
    plateau = plateau_point(result.law, threshold)
    entry["plateau"] = {"threshold": threshold, "size": _finite(float(plateau.size)),
                        "metric": float(plateau.error), "gain_per_doubling": plateau.gain_per_doubling}
    target = fit_config.target or 0.9 * float(errors.min())
    entry["target"] = {"metric": target, "size": _finite(float(size_for_target(result.law, target)))}
    entry["best_possible"] = float(result.law.E)
    entry["forecast"] = [{"size": float(s), "predicted": float(result.predict(np.array([s]))[0])}
                         for s in fit_config.forecast_at]
    return entry


def fit_curves(rows: list[dict], fit_config) -> dict:
    """Rectified and vanilla fits of every curve of the results table.

    Parameters
    ----------
    rows : list of dict
        Rows of the results table (``model``, the size column, ``metric``).
    fit_config : FitConfig
        Size column, hold-out, target, plateau threshold, bootstrap, Huber δ.

    Returns
    -------
    dict
        Curve name -> ``{"sizes", "metric", "rectified": {...}, "vanilla": {...}}``;
        each law's entry holds the :class:`~synthllm.scaling.FitResult` under ``"fit"``.
    """
    curves: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row["metric"] is None:
            continue
        curves.setdefault(row["model"], []).append((float(row[fit_config.size_column]), float(row["metric"])))
    fits = {}
    for name, points in curves.items():
        points.sort()
        sizes = np.array([p[0] for p in points])
        errors = np.array([p[1] for p in points])
        entry = {"sizes": sizes.tolist(), "metric": errors.tolist()}
        if np.any(errors <= 0):
            entry["skipped"] = "a metric value is 0 (the laws are fitted in log space)"
        else:
            entry["rectified"] = _fit_one(sizes, errors, "rectified", fit_config)
            positive = sizes > 0
            entry["vanilla"] = _fit_one(sizes[positive], errors[positive], "vanilla", fit_config)
        fits[name] = entry
    return fits


def _jsonable(fits: dict) -> dict:
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k != "fit"}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, (np.floating, float)):
            return _finite(float(value))
        if isinstance(value, np.integer):
            return int(value)
        return value

    return clean(fits)


def _plot(fits: dict, path: Path, size_label: str, metric: str) -> Path | None:
    from ..scaling.plot import plot_fits

    drawn, heldout = {}, {}
    for name, entry in fits.items():
        for law in ("rectified", "vanilla"):
            fit_entry = entry.get(law) or {}
            if "fit" in fit_entry:
                label = f"{name} ({law})"
                drawn[label] = fit_entry["fit"]
                if fit_entry["heldout"]:
                    heldout[label] = (np.array([h["size"] for h in fit_entry["heldout"]]),
                                      np.array([h["observed"] for h in fit_entry["heldout"]]))
    if not drawn:
        return None
    label = "held-out loss (nats/token)" if metric == "heldout_loss" else "error (1 - accuracy)"
    return plot_fits(drawn, path, heldout=heldout, size_label=size_label, error_label=label)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#1d2330;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #d9dee8;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #d9dee8;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f1f4f9}td{font-variant-numeric:tabular-nums}
.meta{color:#5b6475;font-size:.9em}.note{color:#5b6475;font-size:.85em;max-width:60em}
img{max-width:100%;border:1px solid #e5e8ef;margin:.4em 0}
"""


def _table(header: list[str], rows: list[list]) -> str:
    """An HTML table; cells formatted as in the run report (``analysis.report.fmt``) and escaped."""
    from ..analysis.report import fmt

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(results: list[dict], ggmi: list[dict], fits: dict, plan: dict, png: Path | None, config) -> str:
    size_column = config.fit.size_column
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>synthllm study</title>"
             f"<style>{CSS}</style></head><body>",
             "<h1>Study: data size → model quality → forecast</h1>",
             f"<p class='meta'>base model {html.escape(str(plan.get('model')))} · device "
             f"{html.escape(str(plan.get('device')))} · training {html.escape(json.dumps(plan.get('training', {})))}</p>"]
    parts.append("<h2>Fits</h2>")
    fit_rows = []
    for name, entry in fits.items():
        for law in ("rectified", "vanilla"):
            e = entry.get(law) or {}
            if "params" not in e:
                fit_rows.append([name, law] + [e.get("skipped", entry.get("skipped"))] + [None] * 8)
                continue
            p = e["params"]
            fit_rows.append([name, law, e["n_fit"], p["beta"], p["E"], p["B"], p.get("D_l"), e["rmsd_log_fit"],
                             e["rmsd_log_heldout"], e["plateau"]["size"], e["target"]["size"]])
    parts.append(_table(["curve", "law", "n fitted", "β", "E", "B", "D_l", "RMSD log (fit)",
                         "RMSD log (held out)", f"plateau ({size_column})", f"{size_column} to target"], fit_rows))
    parts.append("<p class='note'>Plateau: where one more doubling improves the metric by less than the threshold "
                 "(default 1% of the size-0 value). Target: default 90% of the best observed value. Held-out: the "
                 "largest sizes, not used by the fit.</p>")
    if png is not None and png.is_file():
        image = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f"<img alt='fits' src='data:image/png;base64,{image}'>")
    parts.append("<h2>Results</h2>")
    columns = ["model", "samples", "tokens", "accuracy", "heldout_loss", "train_loss", "gen_gap",
               "h_anchor_given_w", "h_gen_given_w"]
    parts.append(_table(columns, [[row[c] for c in columns] for row in results]))
    if ggmi:
        parts.append("<h2>GGMI, measured (SPEC §3)</h2><p class='note'>gap = held-out loss − training loss; "
                     "GGMI = gap(anchor-trained W′) − gap(synthetic-trained W); α = H(S_anchor|W′) / "
                     "H(S_anchor|W).</p>")
        keys = list(ggmi[0])
        parts.append(_table(keys, [[row[k] for k in keys] for row in ggmi]))
    records = plan.get("train_records") or {}
    if records:
        parts.append("<h2>Training runs</h2>")
        parts.append(_table(["unit", "steps", "tokens", "wall s", "CPU s", "tokens/s", "resumed from"],
                            [[name, r.get("steps"), r.get("train_tokens"), r.get("runtime_s"), r.get("cpu_s"),
                              r.get("tokens_per_s"), r.get("resumed_from")]
                             for name, r in records.items() if r]))
    parts.append("</body></html>")
    return "".join(parts)


def write_study_report(out_dir: Path, results: list[dict], ggmi: list[dict], config, plan: dict) -> dict:
    """Fit the laws and write ``fits.json``, ``fit.png`` and ``study.html`` in the study folder.

    Parameters
    ----------
    out_dir : Path
        The study folder.
    results : list of dict
        Rows of the results table.
    ggmi : list of dict
        Rows of the GGMI table (empty without an anchor set).
    config : StudyConfig
        For the fit settings.
    plan : dict
        ``plan.json`` plus the units' training records.

    Returns
    -------
    dict
        The JSON document written to ``fits.json``.
    """
    fits = fit_curves(results, config.fit)
    png = _plot(fits, out_dir / "fit.png", config.fit.size_column, config.fit.metric)
    document = {"metric": config.fit.metric, "size_column": config.fit.size_column, "curves": _jsonable(fits),
                "ggmi": ggmi}
    atomic_write_text(out_dir / "fits.json", json.dumps(document, indent=2) + "\n")
    atomic_write_text(out_dir / "study.html", _html(results, ggmi, fits, plan, png, config))
    return document
