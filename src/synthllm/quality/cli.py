"""``synthllm quality filter|dedup|decontam``: the quality steps on JSONL files.

Each command reads an input JSONL, writes the kept records to an output
JSONL and a JSON report that lists every removed record with its reason.

Records are checked before any work: an ``id`` that is not a string or an
integer (null, a fraction, a list: ``dedup`` once kept them silently), a
compared text field that is not a string, an empty ratings file (the filter
used to keep everything without a word) or a line that is not UTF-8 JSON
stops the command with one ``error: file:line: field: ...`` line, exit 2
(:mod:`synthllm.cliutil`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from ..cliutil import fail, handle_errors
from ..errors import InputError
from ..io import iter_jsonl, iter_numbered_jsonl, json_type
from .decontam import BenchmarkSpec, Decontaminator, shared_benchmark_specs
from .dedup import deduplicate
from .domain_filter import (
    DEFAULT_THRESHOLD,
    ColdStartClassifier,
    DomainScorer,
    embed_documents,
    load_ratings,
    split_by_score,
)

app = typer.Typer(help="Quality steps on JSONL files: domain filter, dedup, decontamination.",
                  no_args_is_help=True, add_completion=False)


def _read_records(path: Path, required: tuple[str, ...] = ("id",), strings: tuple[str, ...] = ()) -> list[dict]:
    """The records of a JSONL file, checked line by line.

    Parameters
    ----------
    path : the JSONL file.
    required : fields every record must have.
    strings : fields that, when present, must hold a string. An ``id`` must be a
        string or an integer, as in a corpus (:func:`synthllm.io.read_documents`).

    Returns
    -------
    list of dict
        The records, in file order.

    Raises
    ------
    InputError
        ``file:line: field: what`` for the first record that fails a check.
    """
    records = []
    for number, record in iter_numbered_jsonl(path):
        for key in required:
            if key not in record:
                raise InputError.at(path, f"record has no {key!r} field", line=number)
        if "id" in record:
            value = record["id"]
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise InputError.at(path, f"must be a string or an integer, not {json_type(value)}",
                                    line=number, field="id")
        for key in strings:
            if key in record and not isinstance(record[key], str):
                raise InputError.at(path, f"must be a string, not {json_type(record[key])}", line=number, field=key)
        records.append(record)
    return records


def _write(path: Path, text_lines) -> None:
    """Write lines to ``path`` (creating its folder); a one-line error when it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(text_lines)
    except OSError as error:
        raise InputError.at(path, f"cannot write ({error.strerror or error})") from None


def _write_jsonl(path: Path, records: list[dict]) -> None:
    _write(path, (json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def _write_report(path: Path, report: dict) -> None:
    _write(path, [json.dumps(report, ensure_ascii=False, indent=2) + "\n"])


def parse_benchmark(value: str) -> BenchmarkSpec:
    """A benchmark given on the command line as ``name=path:field[,field...][,id=id_field]``.

    Parameters
    ----------
    value : str
        E.g. ``gsm8k=data/gsm8k/test.jsonl:question,answer`` or
        ``math=math.jsonl:problem,solution,id=idx``.

    Returns
    -------
    BenchmarkSpec
        The parsed spec (the file is not opened here).

    Raises
    ------
    ValueError
        When the value does not have that shape.
    """
    name, sep, rest = value.partition("=")
    path, sep2, fields_part = rest.rpartition(":")
    if not sep or not sep2 or not name or not path or not fields_part:
        raise ValueError(f"--benchmark {value!r}: expected name=path:field[,field...][,id=id_field]")
    fields, id_field = [], None
    for item in fields_part.split(","):
        if item.startswith("id="):
            id_field = item[3:]
        elif item:
            fields.append(item)
    if not fields:
        raise ValueError(f"--benchmark {value!r}: no text field given")
    return BenchmarkSpec(name, Path(path), fields, id_field)


@app.command("filter")
@handle_errors
def filter_command(
    input: Annotated[Path, typer.Argument(help="Corpus JSONL: one {id, text, ...} document per line.")],
    output: Annotated[Path, typer.Argument(help="JSONL of the kept documents (with domain_score added).")],
    report: Annotated[Path, typer.Option("--report", "-r", help="JSON report: scorer error, kept share, "
                                                                  "every dropped id with its score.")],
    ratings: Annotated[Optional[Path], typer.Option(help="JSONL of {id, rating} (1-10) for corpus documents: "
                                                         "trains the random-forest scorer.")] = None,
    positives: Annotated[Optional[Path], typer.Option(help="Cold start: JSONL of in-domain example documents "
                                                           "{text}; a classifier against random corpus "
                                                           "documents filters the corpus first.")] = None,
    threshold: Annotated[float, typer.Option(help="Keep documents whose predicted rating exceeds this.")]
        = DEFAULT_THRESHOLD,
    cold_start_threshold: Annotated[float, typer.Option(help="Keep documents whose cold-start probability "
                                                             "is at least this.")] = 0.5,
    negatives: Annotated[Optional[int], typer.Option(help="Random corpus documents used as cold-start "
                                                          "negatives (default: as many as positives).")] = None,
    text_key: Annotated[str, typer.Option(help="Field holding the document text.")] = "text",
    embedder: Annotated[Optional[str], typer.Option(help="Sentence-transformers model name or folder "
                                                         "(default: the packaged all-MiniLM-L6-v2).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the forests, folds and negative draw.")] = 0,
) -> None:
    """Domain filter (stage 1): score every document and keep those above the threshold."""
    if ratings is None and positives is None:
        fail("give --ratings, --positives or both")
    documents = _read_records(input, ("id", text_key), (text_key,))
    if not documents:
        fail(f"{input}: no documents (empty file)")
    rating_by_id: dict[str, float] = {}
    if ratings is not None:
        rating_by_id = load_ratings(ratings)
        known = {str(d["id"]) for d in documents}
        unknown = [i for i in rating_by_id if i not in known]
        if unknown:
            fail(f"{ratings}: {len(unknown)} rated ids are not in {input} (first: {unknown[0]!r})")
    embeddings = embed_documents(documents, text_key, model=embedder)
    summary: dict = {"input": str(input), "n_input": len(documents), "threshold": threshold}
    candidates = np.arange(len(documents))
    dropped: list[dict] = []

    if positives is not None:
        examples = _read_records(positives, (text_key,), (text_key,))
        if not examples:
            fail(f"{positives}: no example documents (empty file)")
        n_negative = min(len(documents), negatives or len(examples))
        negative_rows = random.Random(seed).sample(range(len(documents)), n_negative)
        classifier = ColdStartClassifier(random_state=seed).fit(
            embed_documents(examples, text_key, model=embedder), embeddings[negative_rows])
        probability = classifier.predict(embeddings)
        passed = probability >= cold_start_threshold
        dropped += [{"id": documents[i]["id"], "cold_start_probability": round(float(probability[i]), 4),
                     "reason": "cold_start"} for i in np.flatnonzero(~passed)]
        candidates = np.flatnonzero(passed)
        summary["cold_start"] = {**classifier.cv_report, "threshold": cold_start_threshold,
                                 "n_passed": int(passed.sum())}

    if rating_by_id:
        row_of = {str(d["id"]): i for i, d in enumerate(documents)}
        rated_rows = [row_of[i] for i in rating_by_id]
        scorer = DomainScorer(random_state=seed).fit(embeddings[rated_rows], np.array(list(rating_by_id.values())))
        scores = scorer.predict(embeddings[candidates])
        kept, below = split_by_score([documents[i] for i in candidates], scores, threshold)
        dropped += [{**row, "reason": "below_threshold"} for row in below]
        summary["scorer_cv"] = scorer.cv_report
        summary["n_rated"] = len(rating_by_id)
    else:
        kept = [documents[i] for i in candidates]

    summary.update(n_kept=len(kept), kept_share=round(len(kept) / max(len(documents), 1), 4), dropped=dropped)
    _write_jsonl(output, kept)
    _write_report(report, summary)
    cv = summary.get("scorer_cv", {})
    cv_text = f", scorer CV MAE {cv['mae']}" if "mae" in cv else ""
    typer.echo(f"filter: kept {len(kept)}/{len(documents)} documents ({summary['kept_share']:.1%}){cv_text}")


@app.command("dedup")
@handle_errors
def dedup_command(
    input: Annotated[Path, typer.Argument(help="JSONL of records with an id and a text field.")],
    output: Annotated[Path, typer.Argument(help="JSONL of the kept records (first occurrences).")],
    report: Annotated[Path, typer.Option("--report", "-r", help="JSON report listing every removed record "
                                                                  "with the id it duplicates.")],
    text_key: Annotated[str, typer.Option(help="Field compared.")] = "question",
    threshold: Annotated[float, typer.Option(min=0.01, max=1.0, help=(
        "Exact Jaccard similarity of character-shingle sets (numbers masked) at or above which two records are "
        "near-duplicates; MinHash LSH only proposes the candidates."))] = 0.7,
    num_perm: Annotated[int, typer.Option(min=16, help="MinHash permutations.")] = 128,
    ngram: Annotated[int, typer.Option(min=1, help="Characters per shingle.")] = 5,
) -> None:
    """Remove exact and near-duplicate records (MinHash LSH), keeping the first occurrence."""
    records = _read_records(input, ("id", text_key), (text_key,))
    if not records:
        fail(f"{input}: no records (empty file)")
    kept, removed = deduplicate(records, text_key=text_key, threshold=threshold, num_perm=num_perm, ngram=ngram)
    _write_jsonl(output, kept)
    _write_report(report, {
        "input": str(input), "n_input": len(records), "n_kept": len(kept), "n_removed": len(removed),
        "n_exact": sum(r["kind"] == "exact" for r in removed), "n_near": sum(r["kind"] == "near" for r in removed),
        "text_key": text_key, "threshold": threshold, "num_perm": num_perm, "ngram": ngram, "removed": removed})
    typer.echo(f"dedup: kept {len(kept)}/{len(records)}; removed {len(removed)} "
               f"({sum(r['kind'] == 'exact' for r in removed)} exact, "
               f"{sum(r['kind'] == 'near' for r in removed)} near)")


@app.command("decontam")
@handle_errors
def decontam_command(
    input: Annotated[Path, typer.Argument(help="JSONL of records with an id and the checked fields.")],
    output: Annotated[Path, typer.Argument(help="JSONL of the clean records.")],
    report: Annotated[Path, typer.Option("--report", "-r", help="JSON report listing every removed record "
                                                                  "with the benchmark item it matched.")],
    benchmark: Annotated[Optional[list[str]], typer.Option(
        help="Benchmark as name=path:field[,field...][,id=id_field] (repeatable).")] = None,
    shared: Annotated[Optional[bool], typer.Option(
        "--shared/--no-shared", help="Also use the SPEC's six benchmarks found in the shared data folder "
                                     "($SYNTHLLM_DATA or ../shared/data): GSM8K, MATH, Minerva, OlympiadBench, "
                                     "CollegeMath, Gaokao-2023-En test sets. Default: only when no --benchmark "
                                     "is given.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Shared data folder holding gsm8k/test.jsonl, "
                                                          "math/test.jsonl and the others.")] = None,
    fields: Annotated[str, typer.Option(help="Comma-separated record fields to check.")] = "question,answer",
    ngram: Annotated[int, typer.Option(min=5, help="Token n-gram length of the candidate index.")] = 13,
    verify_ngram: Annotated[int, typer.Option(min=3, help="Token k-gram length of the coverage check.")] = 6,
    min_coverage: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of a benchmark text a sample "
                                                                        "must cover to count as a leak.")] = 0.7,
    min_span: Annotated[int, typer.Option(min=1, help="Matched stretch (tokens) that is a leak whatever "
                                                      "the coverage.")] = 50,
) -> None:
    """Remove records whose question or answer overlaps a benchmark test item."""
    try:
        specs = [parse_benchmark(value) for value in benchmark or []]
    except ValueError as error:
        fail(str(error))
    if shared or (shared is None and not specs):
        found = shared_benchmark_specs(data_dir)
        if not found:
            fail(f"no shared benchmarks found in {data_dir or '$SYNTHLLM_DATA or ../shared/data'}; "
                  "pass --benchmark name=path:fields")
        specs += found
    for spec in specs:
        if not Path(spec.path).is_file():
            fail(f"{spec.path}: benchmark file of {spec.name!r} not found")
        if next(iter_jsonl(spec.path), None) is None:
            fail(f"{spec.path}: benchmark file of {spec.name!r} is empty")
    checked = tuple(f.strip() for f in fields.split(",") if f.strip())
    records = _read_records(input, ("id",), checked)
    if not records:
        fail(f"{input}: no records (empty file)")
    try:
        decontaminator = Decontaminator(specs, ngram=ngram, verify_ngram=verify_ngram,
                                        min_coverage=min_coverage, min_span=min_span)
    except (ValueError, KeyError) as error:  # a benchmark line without a named field (InputError is a ValueError)
        fail(str(error))
    kept, removed = decontaminator.filter(records, fields=checked)
    _write_jsonl(output, kept)
    _write_report(report, {
        "input": str(input), "n_input": len(records), "n_kept": len(kept), "n_removed": len(removed),
        "fields": list(checked), "ngram": ngram, "verify_ngram": verify_ngram, "min_coverage": min_coverage,
        "min_span": min_span,
        "benchmarks": [{"name": s.name, "path": str(s.path), "fields": list(s.text_fields),
                        "items": decontaminator.n_items[s.name]} for s in specs],
        "removed": removed})
    typer.echo(f"decontam: kept {len(kept)}/{len(records)}; removed {len(removed)} "
               f"(benchmarks: {', '.join(s.name for s in specs)})")
