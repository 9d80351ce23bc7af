"""The ``synthllm`` command-line program: thin commands over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
import yaml

from .cliutil import fail, handle_errors
from .config import Config, load_config
from .demo import demo_config
from .errors import EXIT_WORK_LEFT
from .progress import console

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Turn a corpus into synthetic question-answer data the SynthLLM way, and measure it.")


def _config_for(run_dir: Path, config: Optional[Path], overrides: dict | None = None) -> Config:
    """The config named on the command line, else the one saved in the run folder."""
    if config is None:
        saved = run_dir / "config.yaml"
        if not saved.exists():
            fail(f"{run_dir}: no config.yaml in the run folder; pass a CONFIG file")
        config = saved
    return load_config(config, overrides)


def _save_config(run_dir: Path, config: Config) -> None:
    from .store import RunStore, atomic_write_text

    store = RunStore(run_dir)
    data = config.model_dump(mode="json", exclude_none=True)
    atomic_write_text(store.root / "config.yaml", yaml.safe_dump(data, sort_keys=False))


def _run(run_dir: Path, config: Config, until: str | None = None, levels=(1, 2, 3), report: bool = False) -> dict:
    """Run the pipeline; a run that stopped with work left exits with status 3 after saying so."""
    from .pipeline import Pipeline

    _save_config(run_dir, config)
    pipeline = Pipeline(config, run_dir)
    try:
        manifest = pipeline.run(until=until, levels=levels)
    finally:
        pipeline.close()
    finished = until is None and "partial" not in manifest
    grounding = _grounding(run_dir, manifest) if finished and report and config.report.enabled else None
    if report and config.report.enabled and finished:
        _write_report(run_dir, config)
    _print_outcome(run_dir, manifest)
    _print_quality_warnings(manifest, grounding)
    if "partial" in manifest:
        fail(f"{run_dir}: stopped with work left ({manifest['partial']['reason']}); run the same command again "
             "to finish it", EXIT_WORK_LEFT)
    return manifest


def _write_report(run_dir: Path, config: Config) -> None:
    """report.html / report.json, then the dataset card (README.md), which reads the report."""
    from .errors import MissingDependency

    try:
        from .analysis import write_report

        write_report(run_dir, lm=config.report.lm)
        console.print(f"report: {run_dir / 'report.html'}")
        from .card import write_card

        console.print(f"dataset card: {write_card(run_dir)}")
    except (ImportError, MissingDependency) as exc:  # the analysis and hub extras are optional
        console.print(f"[yellow]report or card skipped: {exc}[/]")


def _grounding(run_dir: Path, manifest: dict) -> dict | None:
    """Grounding of the dataset (SPEC §5), recorded in the manifest for the report and the card."""
    try:
        from .analysis.grounding import grounding
    except ImportError:  # the embeddings extra is optional
        return None
    if not manifest.get("dataset_rows"):
        return None
    from .store import RunStore

    with console.status("grounding: embedding questions and documents ..."):
        result = grounding(run_dir)
    manifest["grounding"] = result
    RunStore(run_dir).write_manifest(manifest)
    return result


def _print_quality_warnings(manifest: dict, grounding: dict | None) -> None:
    """One line per poorly parsed stage or poorly grounded level (thresholds in analysis/grounding.py)."""
    try:
        from .analysis.grounding import quality_warnings
    except ImportError:  # the analysis extra is optional
        return
    for line in quality_warnings(manifest.get("stages", {}), grounding):
        console.print(f"[yellow]warning: {line}[/]", markup=True, highlight=False)


def _print_outcome(run_dir: Path, manifest: dict) -> None:
    rec = manifest.get("reconciliation", {})
    if "dataset_rows" in manifest:
        levels = manifest.get("dataset_by_level", {})
        console.print(f"dataset: {manifest['dataset_rows']} rows "
                      f"(L1 {levels.get('1', 0)}, L2 {levels.get('2', 0)}, L3 {levels.get('3', 0)}) "
                      f"→ {run_dir / 'dataset.parquet'}")
    if rec.get("ok"):
        console.print("counts reconcile: yes")
    else:
        for problem in rec.get("problems", []):
            console.print(f"[red]counts do not reconcile: {problem}[/]")


_EXECUTOR = typer.Option(None, "--executor", help="local or ray (overrides the config's executor).")


def _executor_override(executor: Optional[str]) -> dict:
    if executor is None:
        return {}
    if executor not in ("local", "ray"):
        fail(f"--executor must be 'local' or 'ray', not {executor!r}")
    return {"executor": executor}


@app.command()
@handle_errors
def run(config: Path = typer.Argument(..., help="YAML config file (see `synthllm config-schema`)."),
        out: Path = typer.Option(..., "--out", "-o", help="Run folder (resumed if it exists)."),
        report: bool = typer.Option(True, help="Write report.html / report.json at the end."),
        until: Optional[str] = typer.Option(None, "--until", help="Stop after this step (see `synthllm steps`)."),
        executor: Optional[str] = _EXECUTOR):
    """Run the whole pipeline: documents → filter → concepts → Level-1/2/3 questions → answers → curated dataset.

    Exit status: 0 done; 2 bad input; 3 stopped with work left (time budget, server down, requests still
    failing): run the same command again to finish.
    """
    _run(out, load_config(config, _executor_override(executor)), until=until, report=report)


@app.command()
@handle_errors
def demo(out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder."),
         docs: int = typer.Option(8, "--docs", min=1, help="How many documents of the sample corpus to use."),
         corpus: Optional[Path] = typer.Option(None, help="Another JSONL corpus instead of the OpenStax sample."),
         model: Optional[str] = typer.Option(None, help="Model folder or .gguf instead of the packaged SmolLM2."),
         report: bool = typer.Option(True, help="Write report.html / report.json at the end."),
         executor: Optional[str] = _EXECUTOR):
    """Run the pipeline on the OpenStax sample with the embedded SmolLM2 model (no network, no API key)."""
    config = demo_config(docs, corpus, model).model_copy(update=_executor_override(executor))
    console.print(f"demo: {docs} documents of {config.input.path}, model {config.llm.model}")
    _run(out, config, report=report)


_CONFIG_ARG = typer.Option(None, "--config", "-c", help="YAML config; default: the run folder's config.yaml.")
_OUT_ARG = typer.Option(..., "--out", "-o", help="Run folder.")


def _step_command(name: str, help_text: str) -> None:
    """``synthllm NAME --out DIR``: one step of the declared list (and the steps it needs)."""

    @handle_errors
    def command(out: Path = _OUT_ARG, config: Optional[Path] = _CONFIG_ARG):
        _run(out, _config_for(out, config), until=name)

    command.__doc__ = f"{help_text} (runs the steps it needs first)"
    app.command(name)(command)


def _mount_step_commands() -> None:
    from .steps import STEPS

    for step in STEPS:
        if step.command:
            _step_command(step.name, step.help)


@app.command()
@handle_errors
def generate(out: Path = _OUT_ARG, config: Optional[Path] = _CONFIG_ARG,
             level: int = typer.Option(..., "--level", "-l", min=1, max=3, help="Question level: 1, 2 or 3.")):
    """Generate questions of one level (running the steps it needs first)."""
    _run(out, _config_for(out, config), until=f"level{level}", levels=(level,))


@app.command()
@handle_errors
def answer(out: Path = _OUT_ARG, config: Optional[Path] = _CONFIG_ARG):
    """Answer every generated question, then dedup, decontaminate and write the dataset."""
    _run(out, _config_for(out, config))


@app.command()
def steps():
    """List the steps of a run in order, with what each reads."""
    from .steps import STEPS

    for step in STEPS:
        typer.echo(f"{step.name:<10} {step.kind:<7} reads {', '.join(step.reads) or '-':<24} {step.help}")


@app.command("config-schema")
def config_schema(as_json: bool = typer.Option(False, "--json", help="Print the JSON schema instead of a table.")):
    """Print every config field with its default and description."""
    if as_json:
        typer.echo(json.dumps(Config.model_json_schema(), indent=2))
        return
    for line in describe_config():
        typer.echo(line)


def describe_config(model=Config, prefix: str = "") -> list[str]:
    """``section.field: default — description`` lines for every config field."""
    from pydantic import BaseModel

    lines = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.extend(describe_config(annotation, f"{prefix}{name}."))
            continue
        default = field.get_default(call_default_factory=True)
        lines.append(f"{prefix}{name} = {json.dumps(default, default=str)}  # {field.description or ''}")
    return lines


def _mount_optional_commands() -> None:
    """Commands of the optional parts (graph, quality, scaling, analysis)."""
    from .graph.cli import app as graph_app

    app.add_typer(graph_app, name="graph", help="Build, inspect and walk the concept graph.")
    from .quality.cli import app as quality_app

    app.add_typer(quality_app, name="quality", help="Domain filter, dedup and decontamination on JSONL files.")
    from .scaling.cli import fit

    app.command("fit")(fit)
    from .analysis.cli import gmm, report as report_command

    app.command("report")(report_command)
    app.command("gmm")(gmm)
    from .card_cli import app as card_app

    app.add_typer(card_app)  # synthllm card, synthllm push
    from .study.cli import study

    app.command("study")(study)


_mount_step_commands()
_mount_optional_commands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
