"""Commands ``synthllm card`` (write a run folder's dataset card) and ``synthllm push`` (publish it on the Hub).

``app`` has no name: the top-level CLI merges its two commands with one
``app.add_typer(...)``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .cliutil import handle_errors

app = typer.Typer()


@app.command("card")
@handle_errors
def card(
    run_dir: Path = typer.Argument(..., help="A finished run folder (manifest.json, dataset.parquet)."),
    repo: str | None = typer.Option(None, "--repo", help="OWNER/NAME of the Hub dataset, for the card's loading examples."),
) -> None:
    """Write the run folder's dataset card, README.md (Hugging Face dataset-card format)."""
    from .card import write_card

    typer.echo(f"wrote {write_card(run_dir, repo_id=repo)}")


@app.command("push")
@handle_errors
def push(
    run_dir: Path = typer.Argument(..., help="A finished run folder (manifest.json, dataset.parquet)."),
    repo: str = typer.Option(..., "--repo", help="OWNER/NAME of the Hub dataset repository (created if missing)."),
    public: bool = typer.Option(False, "--public", help="Create the repository public (default: private)."),
    token_env: str = typer.Option("HF_TOKEN", "--token-env", help="Environment variable holding the access token."),
    write_card: bool = typer.Option(True, "--card/--no-card",
                                    help="Rewrite README.md from the run folder first (--no-card: upload it as is)."),
) -> None:
    """Upload the dataset, its card and the report to the Hugging Face Hub (token from $HF_TOKEN)."""
    from .hub import push as push_run

    url = push_run(run_dir, repo, private=not public, token_env=token_env, card=write_card)
    typer.echo(f"pushed {run_dir} to {repo} ({'public' if public else 'private'}): {url}")
