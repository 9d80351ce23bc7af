"""Commands ``synthllm report`` and ``synthllm gmm``.

``app`` registers both for tests; the top-level CLI mounts the two functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..cliutil import handle_errors

app = typer.Typer(help="Analysis of runs: report, and the reverse-bottleneck GMM study.", no_args_is_help=True)


@app.command("report")
@handle_errors
def report(
    run_dir: Path = typer.Argument(..., help="Run folder (with manifest.json and dataset.parquet)."),
    no_lm: bool = typer.Option(False, "--no-lm", help="Skip the reference-LM entropy estimates (the slow part)."),
    lm_model: Optional[str] = typer.Option(
        None, "--lm-model", help="Reference LM: a local Hugging Face folder or .gguf (default: embedded SmolLM2)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for report.html/.json (default: RUN_DIR)."),
    max_embed: int = typer.Option(2000, min=2, help="Questions embedded per level for diversity."),
    max_divergence: int = typer.Option(500, min=5, help="Texts embedded per side of each two-sample test."),
    max_lm_texts: int = typer.Option(32, min=1, help="Texts per set scored by the reference LM."),
    max_lm_tokens: int = typer.Option(128, min=8, help="Tokens per text scored by the reference LM."),
    seed: int = typer.Option(0, help="Seed of every sampling step."),
    browse: int = typer.Option(8, min=0, help="Rows per level shown in the report's sample browser."),
) -> None:
    """Write report.html and report.json for a run folder."""
    from .report import write_report

    result = write_report(run_dir, lm=not no_lm, out_dir=out, lm_model=lm_model, max_embed=max_embed,
                          max_divergence=max_divergence, max_lm_texts=max_lm_texts,
                          max_lm_tokens=max_lm_tokens, seed=seed, browse_per_level=browse)
    target = out or run_dir
    levels = result["diversity"]["levels"]
    summary = ", ".join(f"L{level} vendi {data['vendi']:.1f}" for level, data in levels.items())
    typer.echo(f"{result['counts']['dataset_rows']} samples ({summary})")
    typer.echo(f"wrote {target / 'report.html'} and {target / 'report.json'}")


@app.command("gmm")
def gmm(
    rounds: int = typer.Option(6, min=2, help="Random setups per sweep point (the paper used 100)."),
    seed: int = typer.Option(0, help="Master seed."),
    out: Path = typer.Option(Path("gmm-study"), "--out", help="Folder for gmm.json and gmm.png."),
    repeats: int = typer.Option(4, min=2, help="KL-gap estimates per estimator per setup (for the noise)."),
    n_eval: int = typer.Option(1000, min=10, help="Samples per KL estimate (the paper's 1,000)."),
    max_value: int = typer.Option(15, min=3, help="Sweep K, J and L over 2..MAX_VALUE."),
) -> None:
    """Reproduce Gan & Liu's Gaussian-mixture study: KL gap against K, J and L."""
    from .gmm import gmm_study, plot_gmm

    study = gmm_study(rounds=rounds, seed=seed, repeats=repeats, n_eval=n_eval,
                      values=tuple(range(2, max_value + 1)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "gmm.json").write_text(json.dumps(study, indent=2), encoding="utf-8")
    plot_gmm(study, out / "gmm.png")
    for param, sweep in study["sweeps"].items():
        means = sweep["exact"]["mean"]
        typer.echo(f"{param}: gap {means[0]:+.3f} at {param}={sweep['exact']['values'][0]} -> "
                   f"{means[-1]:+.3f} at {param}={sweep['exact']['values'][-1]} (exact estimator)")
    for name, noise in study["noise"].items():
        typer.echo(f"{name:9s} run-to-run std on a fixed setup: median {noise['median']:.4f}, "
                   f"rms {noise['rms']:.4f}; rms error vs reference {noise['error_rms']:.4f}")
    typer.echo(f"wrote {out / 'gmm.json'} and {out / 'gmm.png'}")
