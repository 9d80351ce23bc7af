"""Reading corpora as streams of documents.

Three inputs: JSONL (optionally gzipped), Parquet (read batch by batch), and a
folder of ``.txt``/``.md`` files. Nothing loads the whole corpus: every reader
is a generator. A malformed line is reported with its file and line number,
skipped and counted; it never stops the run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

TEXT_SUFFIXES = (".txt", ".md")


@dataclass
class ReadStats:
    """What the reader saw: documents yielded and lines skipped, with reasons."""

    read: int = 0
    yielded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # first few, "file:line: reason"

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.problems) < 20:
            self.problems.append(f"{where}: {reason}")


from .errors import InputError  # noqa: E402  (re-exported: callers import it from here too)


def content_id(text: str) -> str:
    """A stable id from the text: ``doc-`` + 16 hex digits of its SHA-256."""
    return "doc-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "text"
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    raise InputError(f"{path}: cannot tell the format from the name; set input.format (jsonl, parquet, text)")


def read_documents(path: str | Path, fmt: str = "auto", text_field: str = "text", id_field: str | None = "id",
                   limit: int | None = None, min_chars: int = 0, stats: ReadStats | None = None,
                   on_problem=None) -> Iterator[dict]:
    """Yield ``{"id", "text", "meta"}`` documents from a corpus, streaming.

    Parameters
    ----------
    path : JSONL/Parquet file or folder of text files.
    fmt : ``"auto"``, ``"jsonl"``, ``"parquet"`` or ``"text"``.
    text_field, id_field : field names; a record without an id gets :func:`content_id`.
    limit : stop after this many documents.
    min_chars : shorter documents are skipped (reason ``too_short``).
    stats : filled with counts of what was read and skipped.
    on_problem : called with ``"file:line: reason"`` for every skipped line.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: input not found")
    stats = stats if stats is not None else ReadStats()
    fmt = detect_format(path) if fmt == "auto" else fmt
    raw = {"jsonl": _jsonl_rows, "parquet": _parquet_rows, "text": _text_rows}[fmt](path, text_field, id_field)
    seen_ids: set[str] = set()
    for where, row, problem in raw:
        stats.read += 1
        if problem is None:
            text = row["text"]
            if len(text.strip()) < min_chars:
                problem = "too_short"
            elif row["id"] in seen_ids:
                problem = "duplicate_id"
        if problem is not None:
            stats.skip(problem, where)
            if on_problem is not None:
                on_problem(f"{where}: {problem}")
            continue
        seen_ids.add(row["id"])
        stats.yielded += 1
        yield row
        if limit is not None and stats.yielded >= limit:
            return


def _make_doc(record: dict, text_field: str, id_field: str | None) -> tuple[dict | None, str | None]:
    text = record.get(text_field)
    if not isinstance(text, str):
        return None, f"no string field {text_field!r}"
    doc_id = record.get(id_field) if id_field else None
    doc_id = str(doc_id) if doc_id not in (None, "") else content_id(text)
    meta = {k: v for k, v in record.items() if k not in (text_field, id_field)}
    return {"id": doc_id, "text": text, "meta": meta}, None


def _jsonl_rows(path: Path, text_field: str, id_field: str | None):
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield where, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(record, dict):
                yield where, None, "not a JSON object"
                continue
            doc, problem = _make_doc(record, text_field, id_field)
            yield where, doc, problem


def _parquet_rows(path: Path, text_field: str, id_field: str | None):
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if text_field not in parquet.schema_arrow.names:
        raise InputError(f"{path}: no column {text_field!r} (columns: {', '.join(parquet.schema_arrow.names)})")
    number = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            number += 1
            doc, problem = _make_doc(record, text_field, id_field)
            yield f"{path}:row {number}", doc, problem


def _text_rows(path: Path, text_field: str, id_field: str | None):
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise InputError(f"{path}: no .txt or .md files found")
    base = path if path.is_dir() else path.parent
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            yield str(file), None, "not UTF-8 text"
            continue
        yield str(file), {"id": str(file.relative_to(base)), "text": text, "meta": {}}, None


def truncate_text(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars``, at a paragraph or sentence end when one is near.

    The rule: keep the longest prefix ending at a blank line, else at a
    sentence end (". "), within the last 30% of the budget; else cut hard.
    """
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    floor = int(max_chars * 0.7)
    for mark in ("\n\n", ". ", "\n"):
        cut = head.rfind(mark)
        if cut >= floor:
            return head[:cut + (1 if mark == ". " else 0)].rstrip()
    return head.rstrip()


class JsonlError(InputError):
    """A JSONL line that is not a JSON object; the message is ``file:line: reason``."""


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """The JSON objects of a JSONL file, in order; blank lines are skipped.

    Raises :class:`JsonlError` at the first line that is not a JSON object
    (use :func:`read_documents` to skip and count bad lines instead).
    """
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JsonlError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise JsonlError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield record


def read_jsonl(path: str | Path) -> list[dict]:
    """All JSON objects of a JSONL file (see :func:`iter_jsonl`)."""
    return list(iter_jsonl(path))
