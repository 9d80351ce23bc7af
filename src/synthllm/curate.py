"""The last step: answered questions → dedup → decontamination → dataset files.

Map (per shard, on the configured executor): dataset rows, dedup signatures
(and question embeddings when the optional semantic pass is on), benchmark look-ups. Reduce (here): LSH clustering in record order, dropping
the contaminated rows dedup kept.

Writes ``dataset.parquet`` and ``dataset.jsonl`` (same rows), and the removed
samples with their reasons in ``quality/dedup.jsonl`` and
``quality/decontam.jsonl``. A disabled check still appears in the counts (with
nothing removed), so the chain answers → dedup → decontam → dataset always
reconciles.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from .config import Config
from .errors import InputError, StorageError
from .quality.decontam import shared_data_dir
from .io import jsonl_text
from .store import RunStore, atomic_write_text

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
DATASET_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("level", pa.int8()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("final_answer", pa.string()),
    ("messages", pa.list_(_MESSAGE)),
    ("concepts", pa.list_(pa.string())),
    ("source_doc_ids", pa.list_(pa.string())),
    ("walk", pa.list_(pa.string())),
    ("difficulty", pa.string()),
    ("orig_tag", pa.string()),
    ("agreement", pa.float32()),
    ("model", pa.string()),
    ("prompt_version", pa.string()),
    ("answer_prompt_version", pa.string()),
    ("seed", pa.int64()),
])


def dataset_row(record: dict) -> dict:
    """A dataset row from an answered question record; ``messages`` is TRL's conversational format."""
    return {
        "id": record["id"],
        "level": record["level"],
        "question": record["question"],
        "answer": record["answer"],
        "final_answer": record.get("final_answer"),
        "messages": [{"role": "user", "content": record["question"]},
                     {"role": "assistant", "content": record["answer"]}],
        "concepts": record.get("concepts") or [],
        "source_doc_ids": record.get("source_doc_ids") or [],
        "walk": record.get("walk"),
        "difficulty": record.get("difficulty"),
        "orig_tag": record.get("orig_tag"),
        "agreement": record.get("agreement"),
        "model": record.get("model"),
        "prompt_version": record.get("prompt_version"),
        "answer_prompt_version": record.get("answer_prompt_version"),
        "seed": record.get("seed"),
    }


def _decontaminator(config: Config):
    """The configured :class:`~synthllm.quality.Decontaminator` (its index built once, here) and its benchmark names."""
    cfg = config.decontamination
    data = shared_data_dir() if cfg.use_shared_benchmarks else None
    if not cfg.enabled or (not cfg.benchmarks and data is None):
        return None, []
    from .quality import BenchmarkSpec, Decontaminator, shared_benchmark_specs

    specs = [BenchmarkSpec(b.name, b.path, list(b.fields)) for b in cfg.benchmarks]
    if data is not None:
        specs += shared_benchmark_specs(data)
    for spec in specs:
        if not Path(spec.path).is_file():
            raise InputError(f"{spec.path}: benchmark file for decontamination not found")
    return Decontaminator(specs, ngram=cfg.ngram), [s.name for s in specs]


class CheckShards:
    """Curation's map step on a group of shards of answered questions (picklable, so it runs on Ray too).

    Returns the group's dataset rows (in shard order), their dedup
    signatures (``None`` with dedup off), the decontamination matches of
    every row and the questions' embeddings (``None`` unless the semantic pass is on). The reduce step in :func:`curate_dataset` clusters the
    signatures over the whole dataset and keeps the matches of the rows dedup kept.

    Parameters
    ----------
    config : run configuration (the ``dedup`` section).
    decontaminator : the benchmark index, or ``None`` when decontamination is off.
    """

    fields = ("question", "answer")

    def __init__(self, config: Config, decontaminator):
        self.dedup = config.dedup
        self.decontaminator = decontaminator

    def __call__(self, loaders: list[Callable[[], list[dict]]]) -> tuple[list[dict], list | None, list[dict], object]:
        rows = [dataset_row(r) for load in loaders for r in load()]
        signatures, embeddings = None, None
        if self.dedup.enabled:
            from .quality import text_signatures

            questions = [str(r["question"] or "") for r in rows]
            signatures = text_signatures(questions, self.dedup.num_perm, self.dedup.ngram)
            if self.dedup.semantic_threshold is not None and questions:
                from .embeddings import embed_texts

                embeddings = embed_texts(questions)
        matches = self.decontaminator.filter(rows, fields=self.fields)[1] if self.decontaminator else []
        return rows, signatures, matches, embeddings


def shard_groups(items: list, config: Config) -> list[list]:
    """``items`` cut into consecutive groups, about four per Ray worker.

    Curation commits nothing per shard, so its map step can take many shards
    at once: each Ray task then unpickles the benchmark index (tens of MB for
    GSM8K and MATH) once per group instead of once per shard.
    """
    size = max(1, math.ceil(len(items) / (4 * config.ray.num_workers)))
    return [items[start:start + size] for start in range(0, len(items), size)]


def curate_dataset(store: RunStore, config: Config, executor) -> dict:
    """Dedup and decontaminate the answered questions and write the dataset; returns the step's summary.

    The per-record work (signatures, benchmark look-ups) runs on groups of
    shards on ``executor``; the clustering and the files are written here.
    Removed rows are whole dataset rows plus ``removed_by`` and ``reason``
    (:class:`~synthllm.records.RemovedRow`).
    """
    decontaminator, benchmarks = _decontaminator(config)
    loaders = [functools.partial(store.read_shard, "answers", name) for name in store.shards("answers")]
    rows, signatures, matches, embeddings = [], [], [], []
    for group_rows, group_signatures, group_matches, group_embeddings in executor.map(
            CheckShards(config, decontaminator), shard_groups(loaders, config)):
        rows += group_rows
        signatures += group_signatures or []
        matches += group_matches
        if group_embeddings is not None:
            embeddings.append(group_embeddings)
    kept, dup_removed = rows, []
    if config.dedup.enabled:
        import numpy as np

        from .quality import deduplicate

        cfg = config.dedup
        kept, dup_removed = deduplicate(rows, text_key="question", threshold=cfg.threshold, num_perm=cfg.num_perm,
                                        ngram=cfg.ngram, signatures=signatures,
                                        embeddings=np.vstack(embeddings) if embeddings else None,
                                        semantic_threshold=cfg.semantic_threshold if embeddings else None)
    kept_ids = {r["id"] for r in kept}
    contaminated = {}
    for match in matches:  # the first match of each kept row explains its removal
        if match["id"] in kept_ids:
            contaminated.setdefault(match["id"], match)
    clean = [r for r in kept if r["id"] not in contaminated]
    by_id = {r["id"]: r for r in rows}
    store.write_jsonl("quality/dedup.jsonl", [removed_row(by_id[d["id"]], "dedup", d) for d in dup_removed])
    store.write_jsonl("quality/decontam.jsonl",
                      [removed_row(by_id[i], "decontam", m) for i, m in contaminated.items()])
    write_dataset(store.root, clean)
    return {
        "in": len(rows), "out": len(clean), "removed": len(rows) - len(clean),
        "parts": {
            "dedup": {"in": len(rows), "out": len(kept), "removed": len(dup_removed),
                      "enabled": config.dedup.enabled},
            "decontam": {"in": len(kept), "out": len(clean), "removed": len(contaminated),
                         "enabled": config.decontamination.enabled, "benchmarks": benchmarks},
        },
        "dataset_rows": len(clean),
        "dataset_by_level": {str(level): sum(1 for r in clean if r["level"] == level) for level in (1, 2, 3)},
    }


def removed_row(row: dict, check: str, reason: dict) -> dict:
    """A removed dataset row: the row, which check removed it, and what it matched."""
    return {**row, "removed_by": check, "reason": {k: v for k, v in reason.items() if k != "id"}}


def write_dataset(root: Path, rows: list[dict]) -> None:
    """Write ``dataset.parquet`` and ``dataset.jsonl`` atomically."""
    table = pa.Table.from_pylist(rows, schema=DATASET_SCHEMA)
    tmp = root / ".dataset.parquet.tmp"
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, root / "dataset.parquet")
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"{root / 'dataset.parquet'}: cannot write ({exc}); free space and run the same "
                           "command again (finished work is kept)") from None
    atomic_write_text(root / "dataset.jsonl", jsonl_text(rows))
