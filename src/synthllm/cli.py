"""The ``synthllm`` command-line program: thin commands over the Python API."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
import yaml

from .config import Config, ConfigError, load_config
from .demo import demo_config
from .io import InputError
from .progress import console

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Turn a corpus into synthetic question-answer data the SynthLLM way, and measure it.")

def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _clean_errors():
    """Turn expected failures into one-line messages, without a traceback."""
    try:
        yield
    except (ConfigError, InputError, FileNotFoundError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; finished work is kept: run the same command again to resume", 130)
    except RuntimeError as exc:
        if type(exc).__name__ in ("BackendUnavailable",) or str(exc).startswith(("the embedded model", "the packaged")):
            _fail(str(exc))
        raise


def _config_for(run_dir: Path, config: Optional[Path], overrides: dict | None = None) -> Config:
    """The config named on the command line, else the one saved in the run folder."""
    if config is None:
        saved = run_dir / "config.yaml"
        if not saved.exists():
            _fail(f"{run_dir}: no config.yaml in the run folder; pass a CONFIG file")
        config = saved
    return load_config(config, overrides)


def _save_config(run_dir: Path, config: Config) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    data = config.model_dump(mode="json", exclude_none=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _run(run_dir: Path, config: Config, until: str | None = None, levels=(1, 2, 3), report: bool = False) -> dict:
    from .pipeline import Pipeline

    _save_config(run_dir, config)
    pipeline = Pipeline(config, run_dir)
    try:
        manifest = pipeline.run(until=until, levels=levels)
    finally:
        pipeline.close()
    if report and config.report.enabled and until is None:
        _write_report(run_dir, config)
    _print_outcome(run_dir, manifest)
    return manifest


def _write_report(run_dir: Path, config: Config) -> None:
    try:
        from .analysis import write_report
    except ImportError as exc:  # the analysis extra is optional
        console.print(f"[yellow]report skipped: {exc}[/]")
        return
    write_report(run_dir, lm=config.report.lm)
    console.print(f"report: {run_dir / 'report.html'}")


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
        _fail(f"--executor must be 'local' or 'ray', not {executor!r}")
    return {"executor": executor}


@app.command()
def run(config: Path = typer.Argument(..., help="YAML config file (see `synthllm config-schema`)."),
        out: Path = typer.Option(..., "--out", "-o", help="Run folder (resumed if it exists)."),
        report: bool = typer.Option(True, help="Write report.html / report.json at the end."),
        executor: Optional[str] = _EXECUTOR):
    """Run the whole pipeline: documents → filter → concepts → Level-1/2/3 questions → answers → curated dataset."""
    with _clean_errors():
        _run(out, load_config(config, _executor_override(executor)), report=report)


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder."),
         docs: int = typer.Option(8, "--docs", min=1, help="How many documents of the sample corpus to use."),
         corpus: Optional[Path] = typer.Option(None, help="Another JSONL corpus instead of the OpenStax sample."),
         model: Optional[str] = typer.Option(None, help="Model folder or .gguf instead of the packaged SmolLM2."),
         report: bool = typer.Option(True, help="Write report.html / report.json at the end."),
         executor: Optional[str] = _EXECUTOR):
    """Run the pipeline on the OpenStax sample with the embedded SmolLM2 model (no network, no API key)."""
    with _clean_errors():
        config = demo_config(docs, corpus, model).model_copy(update=_executor_override(executor))
        console.print(f"demo: {docs} documents of {config.input.path}, model {config.llm.model}")
        _run(out, config, report=report)


_CONFIG_ARG = typer.Option(None, "--config", "-c", help="YAML config; default: the run folder's config.yaml.")
_OUT_ARG = typer.Option(..., "--out", "-o", help="Run folder.")


@app.command()
def documents(out: Path = _OUT_ARG, config: Optional[Path] = _CONFIG_ARG):
    """Read the corpus into the run folder's document shards (reports malformed lines)."""
    with _clean_errors():
        _run(out, _config_for(out, config), until="documents")


@app.command()
def concepts(out: Path = _OUT_ARG, config: Optional[Path] = _CONFIG_ARG):
    """Extract level, subject, topics and key concepts of every document."""
    with _clean_errors():
        _run(out, _config_for(out, config), until="concepts")


@app.command()
def generate(out: Path = _OUT_ARG, config: Optional[Path] = _CONFIG_ARG,
             level: int = typer.Option(..., "--level", "-l", min=1, max=3, help="Question level: 1, 2 or 3.")):
    """Generate questions of one level (running the steps it needs first)."""
    with _clean_errors():
        _run(out, _config_for(out, config), until=f"level{level}", levels=(level,))


@app.command()
def answer(out: Path = _OUT_ARG, config: Optional[Path] = _CONFIG_ARG):
    """Answer every generated question, then dedup, decontaminate and write the dataset."""
    with _clean_errors():
        _run(out, _config_for(out, config))


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
    app.command("study")(__import__("synthllm.study.cli", fromlist=["study"]).study)


_mount_optional_commands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
