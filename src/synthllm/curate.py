"""The last step: answered questions → dedup → decontamination → dataset files.

Writes ``dataset.parquet`` and ``dataset.jsonl`` (same rows), and the removed
samples with their reasons in ``quality/dedup.jsonl`` and
``quality/decontam.jsonl``. A disabled check still appears in the counts (with
nothing removed), so the chain answers → dedup → decontam → dataset always
reconciles.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .config import Config
from .quality.decontam import shared_data_dir
from .store import RunStore, atomic_write_text, jsonl_text

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


def _dedup(rows: list[dict], config: Config) -> tuple[list[dict], list[dict]]:
    if not config.dedup.enabled:
        return rows, []
    from .quality import deduplicate

    cfg = config.dedup
    return deduplicate(rows, text_key="question", threshold=cfg.threshold, num_perm=cfg.num_perm, ngram=cfg.ngram)


def _decontaminate(rows: list[dict], config: Config) -> tuple[list[dict], list[dict], list[str]]:
    cfg = config.decontamination
    data = shared_data_dir() if cfg.use_shared_benchmarks else None
    if not cfg.enabled or (not cfg.benchmarks and data is None):
        return rows, [], []
    from .quality import BenchmarkSpec, Decontaminator, shared_benchmark_specs

    specs = [BenchmarkSpec(b.name, b.path, list(b.fields)) for b in cfg.benchmarks]
    if data is not None:
        specs += shared_benchmark_specs(data)
    for spec in specs:
        if not Path(spec.path).is_file():
            raise FileNotFoundError(f"{spec.path}: benchmark file for decontamination not found")
    kept, removed = Decontaminator(specs, ngram=cfg.ngram).filter(rows, fields=("question", "answer"))
    return kept, removed, [s.name for s in specs]


def curate_dataset(store: RunStore, config: Config) -> dict:
    """Dedup and decontaminate the answered questions and write the dataset; returns counts."""
    rows = [dataset_row(r) for r in store.iter_records("answers")]
    kept, dup_removed = _dedup(rows, config)
    clean, contaminated, benchmarks = _decontaminate(kept, config)
    store.write_jsonl("quality/dedup.jsonl", dup_removed)
    store.write_jsonl("quality/decontam.jsonl", contaminated)
    write_dataset(store.root, clean)
    by_level = {str(level): sum(1 for r in clean if r["level"] == level) for level in (1, 2, 3)}
    return {
        "stages": {
            "dedup": {"in": len(rows), "out": len(kept), "removed": len(dup_removed),
                      "enabled": config.dedup.enabled},
            "decontam": {"in": len(kept), "out": len(clean), "removed": len(contaminated),
                         "enabled": config.decontamination.enabled, "benchmarks": benchmarks},
        },
        "dataset_rows": len(clean),
        "dataset_by_level": by_level,
    }


def write_dataset(root: Path, rows: list[dict]) -> None:
    """Write ``dataset.parquet`` and ``dataset.jsonl`` atomically."""
    table = pa.Table.from_pylist(rows, schema=DATASET_SCHEMA)
    tmp = root / ".dataset.parquet.tmp"
    pq.write_table(table, tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, root / "dataset.parquet")
    atomic_write_text(root / "dataset.jsonl", jsonl_text(rows))
