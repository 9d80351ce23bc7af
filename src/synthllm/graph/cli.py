"""``synthllm graph build|stats|walk``: build a concept graph, summarise it, sample walks.

Bad input (a missing, empty, binary or malformed file, a folder that is not a
graph, an output path that cannot be written) prints one ``error: ...`` line
naming the file and exits 2, through :mod:`synthllm.cliutil`.
"""

from __future__ import annotations

import json
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..cliutil import fail, handle_errors
from ..errors import InputError
from .builder import ConceptGraphBuilder, concept_record_files, read_concept_records
from .graph import ConceptGraph
from .walks import sample_walk_arrays

app = typer.Typer(help="Concept graph: build it from concept records, inspect it, sample walks.",
                  no_args_is_help=True, add_completion=False)


def _builder_for_file(path: Path) -> ConceptGraphBuilder:
    """One shard's builder with its partial counts (runs on a worker process)."""
    builder = ConceptGraphBuilder()
    builder.add_records(read_concept_records(path))
    builder.partial_counts()
    return builder


def _load_graph(folder: Path) -> ConceptGraph:
    """The graph saved in ``folder``, or a one-line error naming it."""
    try:
        return ConceptGraph.load(folder)
    except FileNotFoundError as error:  # ConceptGraph.load's own message names the folder
        raise InputError(str(error)) from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise InputError.at(folder, f"not a readable graph folder ({error})") from None


@app.command()
@handle_errors
def build(
    inputs: Annotated[list[Path], typer.Argument(help="Concept-record JSONL files or run folders "
                                                      "(a folder means its stages/concepts/part-*.jsonl).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Graph folder to write.")],
    epsilon: Annotated[float, typer.Option(help="ε in the edge weight log(count + ε).")] = 1e-6,
    synonym_threshold: Annotated[Optional[float], typer.Option(
        help="Merge names whose MiniLM cosine similarity is at least this (off when not given).")] = None,
    workers: Annotated[int, typer.Option(help="Processes reading and counting shards in parallel.")] = 1,
) -> None:
    """Build a concept graph from concept records and write it to a folder."""
    try:
        files = concept_record_files(inputs)
    except FileNotFoundError as error:
        fail(str(error))
    if synonym_threshold is not None and not 0.0 < synonym_threshold <= 1.0:
        raise typer.BadParameter("must be in (0, 1]", param_hint="--synonym-threshold")
    if workers > 1 and len(files) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            shards = list(pool.map(_builder_for_file, files))
    else:
        shards = [_builder_for_file(path) for path in files]
    builder = shards[0]
    for shard in shards[1:]:
        builder.merge(shard)
    if builder.n_documents == 0:
        where = files[0] if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"
        fail(f"{where}: no concept records (empty input)")
    try:
        graph = builder.build(epsilon=epsilon, synonym_threshold=synonym_threshold)
    except ValueError as error:  # a document id added twice (across files)
        fail(str(error))
    try:
        graph.save(out)
    except OSError as error:
        fail(f"{out}: cannot write the graph ({error.strerror or error})")
    edges = graph.edge_counts()
    typer.echo(f"wrote {out}: {graph.n_documents} documents, {graph.n_topics} topics, "
               f"{graph.n_concepts} concepts, {sum(edges.values())} edges")


@app.command()
@handle_errors
def stats(
    graph_folder: Annotated[Path, typer.Argument(help="A folder written by 'graph build'.")],
    top: Annotated[int, typer.Option(help="How many top topics and concepts to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Print node and edge counts per type, degrees, components and the top concepts."""
    summary = _load_graph(graph_folder).stats(top=top)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    typer.echo(f"documents        {summary['documents']}")
    typer.echo(f"nodes            topics {summary['nodes']['topics']}, concepts {summary['nodes']['concepts']}")
    typer.echo("edges            " + ", ".join(f"{kind} {count}" for kind, count in summary["edges"].items()))
    for kind, degree in summary["degree"].items():
        typer.echo(f"degree {kind:<9} " + ", ".join(f"{name} {value}" for name, value in degree.items()))
    components = summary["components"]
    typer.echo(f"components       {components['count']} (largest {components['largest']} nodes, "
               f"{components['isolated_nodes']} isolated)")
    merged = summary["synonyms_merged"]
    typer.echo(f"synonyms merged  topics {merged.get('topics', 0)}, concepts {merged.get('concepts', 0)}")
    for key, title in (("top_topics", "top topics"), ("top_concepts", "top concepts")):
        typer.echo(f"{title} (documents, degree):")
        for entry in summary[key]:
            typer.echo(f"  {entry['documents']:>7} {entry['degree']:>7}  {entry['name']}")


@app.command()
@handle_errors
def walk(
    graph_folder: Annotated[Path, typer.Argument(help="A folder written by 'graph build'.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same walks.")] = 0,
    epochs: Annotated[int, typer.Option(help="Walks started from every topic (the paper ran 5).")] = 5,
    max_walks: Annotated[Optional[int], typer.Option(help="Keep at most this many walks (seeded subset).")] = None,
    novelty: Annotated[float, typer.Option(
        help="Bias toward topics and concepts that earlier epochs used less (0 = off).")] = 0.0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="JSONL file to write (default: stdout).")] = None,
    coverage: Annotated[bool, typer.Option(help="Print a coverage summary to stderr.")] = False,
) -> None:
    """Sample seeded random walks and print them as JSONL (one walk per line)."""
    if epochs < 0 or novelty < 0 or (max_walks is not None and max_walks < 0):
        raise typer.BadParameter("epochs, novelty and max-walks must be >= 0")
    graph = _load_graph(graph_folder)
    arrays = sample_walk_arrays(graph, epochs=epochs, seed=seed, max_walks=max_walks, novelty=novelty)
    lines = (json.dumps(walk_record.to_dict(), ensure_ascii=False) + "\n" for walk_record in arrays.to_walks(graph))
    if out is None:
        sys.stdout.writelines(lines)
    else:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "w", encoding="utf-8") as handle:
                handle.writelines(lines)
        except OSError as error:
            fail(f"{out}: cannot write the walks ({error.strerror or error})")
        typer.echo(f"wrote {len(arrays)} walks to {out}", err=True)
    if coverage:
        report = graph.coverage(arrays)
        typer.echo(" ".join(f"{part}: {report[part]['used']}/{report[part]['total']} used "
                            f"(gini {report[part]['gini']:.3f})" for part in ("topics", "concepts", "edges")),
                   err=True)
