"""``synthllm study CONFIG --out DIR``: train on nested subsets, evaluate, fit the law, forecast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cliutil import handle_errors

__all__ = ["study"]


@handle_errors
def study(
    config: Annotated[Path, typer.Argument(help="Study YAML (see docs/study.md; every field: StudyConfig).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Study folder (created; resumed when it exists).")],
    report: Annotated[bool, typer.Option("--report/--no-report", help="Fit the laws and write study.html at the end.")] = True,
) -> None:
    """Train the model on nested subsets of the data, evaluate every checkpoint, fit the scaling law, forecast."""
    from rich.console import Console

    from .config import load_study_config
    from .runner import run_study

    console = Console(highlight=False)
    settings = load_study_config(config, {"report": report} if not report else None)
    outcome = run_study(settings, out, log=lambda line: console.print(line, markup=False, soft_wrap=True))
    console.print(f"units: {len(outcome.units_run)} run, {len(outcome.units_skipped)} already done", markup=False)
    console.print(f"results: {out / 'results.csv'} ({len(outcome.results)} rows), {out / 'results.parquet'}",
                  markup=False)
    if outcome.report is not None:
        for name, entry in outcome.report["curves"].items():
            for law in ("rectified", "vanilla"):
                fit = entry.get(law) or {}
                if "params" not in fit:
                    continue
                params = fit["params"]
                held = fit["rmsd_log_heldout"]
                line = (f"{name} {law}: beta {params['beta']:.3g}, E {params['E']:.4g}, RMSD log fit "
                        f"{fit['rmsd_log_fit']:.4f}" + (f", held out {held:.4f}" if held is not None else ""))
                if law == "rectified":
                    plateau, target = fit["plateau"]["size"], fit["target"]["size"]
                    line += (f"; plateau at {_size(plateau)} {settings.fit.size_column}, "
                             f"{fit['target']['metric']:.4g} at {_size(target)}")
                console.print(line, markup=False, soft_wrap=True)
        console.print(f"report: {out / 'study.html'} (fits.json, fit.png)", markup=False)


def _size(value) -> str:
    return "never" if value is None else f"{value:.3g}"


app = typer.Typer(add_completion=False)
app.command("study")(study)

if __name__ == "__main__":  # pragma: no cover - `python -m synthllm.study.cli` (e.g. under accelerate launch)
    app()
