"""The run folder: committed shards, their counts, and the manifest.

Layout::

    RUN/
      manifest.json                  summary: config, versions, counts per stage
      stages/<stage>/<shard>.jsonl   output records of one shard
      stages/<stage>/<shard>.rejects.jsonl   unsuitable / unparsable / failed inputs, raw text and reason
      stages/<stage>/<shard>.done.json       counts; its presence is what "committed" means
      dataset.parquet, dataset.jsonl
      quality/, graph/               reports of the global steps

Every file is written to a temporary name, fsynced and renamed, so a crash
leaves either the old state or the new one, never half a file. A shard is
committed once its ``.done.json`` exists: records and rejects are renamed in
first, so a committed shard always has both.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

COUNT_KEYS = ("in", "ok", "out", "unsuitable", "unparsable", "failed",
              "prompt_tokens", "completion_tokens", "model_calls", "cached")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file, fsync, rename, fsync folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def jsonl_text(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def empty_counts() -> dict[str, int]:
    return {key: 0 for key in COUNT_KEYS}


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    # -- shards -----------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        return self.root / "stages" / stage

    def is_committed(self, stage: str, shard: str) -> bool:
        return (self.stage_dir(stage) / f"{shard}.done.json").exists()

    def commit_shard(self, stage: str, shard: str, records: list[dict], rejects: list[dict],
                     counts: dict) -> None:
        folder = self.stage_dir(stage)
        atomic_write_text(folder / f"{shard}.jsonl", jsonl_text(records))
        atomic_write_text(folder / f"{shard}.rejects.jsonl", jsonl_text(rejects))
        atomic_write_text(folder / f"{shard}.done.json", json.dumps(counts, sort_keys=True))

    def shards(self, stage: str) -> list[str]:
        """Committed shard names of a stage, sorted."""
        folder = self.stage_dir(stage)
        if not folder.is_dir():
            return []
        return sorted(p.name[: -len(".done.json")] for p in folder.glob("*.done.json"))

    def shard_counts(self, stage: str, shard: str) -> dict:
        """The counts a committed shard was committed with."""
        return json.loads((self.stage_dir(stage) / f"{shard}.done.json").read_text())

    def read_shard(self, stage: str, shard: str) -> list[dict]:
        with open(self.stage_dir(stage) / f"{shard}.jsonl", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def iter_records(self, stage: str) -> Iterator[dict]:
        for shard in self.shards(stage):
            yield from self.read_shard(stage, shard)

    def iter_rejects(self, stage: str) -> Iterator[dict]:
        for shard in self.shards(stage):
            with open(self.stage_dir(stage) / f"{shard}.rejects.jsonl", encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield json.loads(line)

    def stage_counts(self, stage: str) -> dict[str, int]:
        """Counts summed over a stage's committed shards."""
        total = empty_counts()
        for shard in self.shards(stage):
            counts = self.shard_counts(stage, shard)
            for key, value in counts.items():
                if isinstance(value, (int, float)):
                    total[key] = total.get(key, 0) + value
        return total

    def reset_stage(self, stage: str) -> None:
        """Forget a stage's shards (used when its inputs changed)."""
        folder = self.stage_dir(stage)
        if folder.is_dir():
            for path in folder.iterdir():
                path.unlink()

    # -- manifest ---------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def read_manifest(self) -> dict:
        if self.manifest_path.exists():
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        return {}

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=False, default=str))

    def write_json(self, relative: str, data) -> Path:
        path = self.root / relative
        atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return path

    def write_jsonl(self, relative: str, records: Iterable[dict]) -> Path:
        path = self.root / relative
        atomic_write_text(path, jsonl_text(records))
        return path

    # -- what readers use (the report, the card, the study): never glob the folder ----------
    def dataset_rows(self) -> list[dict]:
        """The rows of ``dataset.jsonl`` (:class:`~synthllm.records.DatasetRow`); ``[]`` before curation."""
        from .io import read_jsonl

        path = self.root / "dataset.jsonl"
        return read_jsonl(path) if path.is_file() else []

    def removed(self, check: str) -> list[dict]:
        """Rows curation removed by ``check`` (``"dedup"`` or ``"decontam"``): :class:`~synthllm.records.RemovedRow`."""
        from .io import read_jsonl

        path = self.root / "quality" / f"{check}.jsonl"
        return read_jsonl(path) if path.is_file() else []

    def read_json(self, relative: str):
        """A JSON file of the run folder (``graph/coverage.json``, ``quality/filter.json``); ``None`` if absent."""
        path = self.root / relative
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            from .errors import InputError

            raise InputError(f"{path}: not valid JSON ({exc})") from None


    # -- readers added for the report and the dataset card (helper "report") ---------------
    def dataset_parquet_rows(self) -> list[dict] | None:
        """The rows of ``dataset.parquet`` (what others load); ``None`` when the file is absent.

        Raises :class:`~synthllm.errors.InputError` naming the file when it is not readable Parquet.
        """
        path = self.root / "dataset.parquet"
        if not path.is_file():
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            from .errors import InputError

            raise InputError.at(path, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from None

    def documents(self, stage: str = "documents") -> list[dict]:
        """The committed documents (:class:`~synthllm.records.Document`, with ``meta``) of ``stage``.

        Raises :class:`~synthllm.errors.InputError` naming the shard and line when a line is not JSON.
        """
        from .io import read_jsonl

        return [doc for shard in self.shards(stage) for doc in read_jsonl(self.stage_dir(stage) / f"{shard}.jsonl")]
