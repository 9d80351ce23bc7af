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

import errno
import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .io import iter_jsonl, jsonl_text, read_jsonl

COUNT_KEYS = ("in", "ok", "out", "unsuitable", "unparsable", "failed",
              "prompt_tokens", "completion_tokens", "model_calls", "cached")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file, fsync, rename, fsync folder).

    Raises
    ------
    StorageError : the disk is full or the filesystem refuses the write (the old file stays whole).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _storage_error(path, exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; the run's files are as readable as any other
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
            raise _storage_error(path, exc) from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_UMASK = os.umask(0)
os.umask(_UMASK)
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _storage_error(path: Path, exc: OSError):
    from .errors import StorageError

    hint = "; free space and run the same command again (finished work is kept)" if exc.errno in (
        errno.ENOSPC, errno.EDQUOT) else ""
    return StorageError(f"{path}: cannot write ({exc.strerror or exc}){hint}")


def empty_counts() -> dict[str, int]:
    return {key: 0 for key in COUNT_KEYS}


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, root: str | Path, create: bool = True):
        from .errors import InputError

        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: the run folder is a file, not a folder")
        if not create:
            if not self.root.is_dir():
                raise InputError(f"{self.root}: no such run folder")
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.root}: cannot create the run folder ({exc.strerror})") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise InputError(f"{self.root}: the run folder is not writable")

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
        return read_jsonl(self.stage_dir(stage) / f"{shard}.jsonl")

    def iter_records(self, stage: str) -> Iterator[dict]:
        for shard in self.shards(stage):
            yield from self.read_shard(stage, shard)

    def iter_rejects(self, stage: str) -> Iterator[dict]:
        for shard in self.shards(stage):
            yield from iter_jsonl(self.stage_dir(stage) / f"{shard}.rejects.jsonl")

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
        """Forget a stage's shards and markers (used when its inputs changed)."""
        folder = self.stage_dir(stage)
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()

    def commit_once(self, stage: str, shard: str, work: Callable[[], tuple[list[dict], list[dict], dict]]) -> dict:
        """Commit ``work()``'s ``(records, rejects, counts)`` as ``shard`` unless it is committed; returns its counts.

        "Skip if committed, process, commit" for the steps without a model
        (model stages use :func:`synthllm.executors.local.run_shard`, which
        also leaves shards with transiently failed requests uncommitted).
        """
        if self.is_committed(stage, shard):
            return self.shard_counts(stage, shard)
        records, rejects, counts = work()
        self.commit_shard(stage, shard, records, rejects, counts)
        return counts

    # -- step markers: one resume rule for every step ----------------------------------
    def fingerprint(self, stage: str) -> str | None:
        """The fingerprint a stage's shards were made with (``None`` for a new stage)."""
        path = self.stage_dir(stage) / "_fingerprint"
        return path.read_text(encoding="utf-8").strip() or None if path.is_file() else None

    def set_fingerprint(self, stage: str, value: str) -> bool:
        """Record ``value`` as ``stage``'s fingerprint; a different old one resets the stage. True if reset."""
        old = self.fingerprint(stage)
        reset = old is not None and old != value
        if reset:
            self.reset_stage(stage)
        if old != value:
            atomic_write_text(self.stage_dir(stage) / "_fingerprint", value)
        return reset

    def done(self, stage: str) -> dict | None:
        """The summary a finished step recorded with :meth:`mark_done`, or ``None`` while it is not finished."""
        path = self.stage_dir(stage) / "_done.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):  # cannot happen with atomic writes; redo the step
            return None

    def mark_done(self, stage: str, summary: dict) -> None:
        """Mark a step finished (atomically) with its summary: a re-run records it and skips the step."""
        atomic_write_text(self.stage_dir(stage) / "_done.json", json.dumps(summary, default=str))

    def clear_done(self, stage: str) -> None:
        (self.stage_dir(stage) / "_done.json").unlink(missing_ok=True)

    # -- one process at a time ---------------------------------------------------------
    def lock(self) -> None:
        """Hold the run folder's lock until :meth:`unlock` or the process ends.

        An advisory ``flock`` on ``RUN/.lock``: the kernel releases it when
        the holder dies, so a killed run never leaves a stale lock behind.

        Raises
        ------
        RunFolderBusy : another process holds it (the message names its pid).
        """
        import fcntl

        from .errors import RunFolderBusy

        path = self.root / ".lock"
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunFolderBusy(f"{self.root}: the run folder is in use by another synthllm process (pid {holder}); "
                                "wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle
        for stale in self.root.rglob(".*.tmp"):  # temp files of a killed writer: nobody else writes here now
            stale.unlink(missing_ok=True)

    def unlock(self) -> None:
        handle = getattr(self, "_lock_handle", None)
        if handle is not None:
            handle.close()
            self._lock_handle = None

    # -- manifest ---------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def read_manifest(self) -> dict:
        """The manifest (``{}`` for a new run folder)."""
        return self.read_json("manifest.json") or {}

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
        path = self.root / "dataset.jsonl"
        return read_jsonl(path) if path.is_file() else []

    def removed(self, check: str) -> list[dict]:
        """Rows curation removed by ``check`` (``"dedup"`` or ``"decontam"``): :class:`~synthllm.records.RemovedRow`."""
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

    # -- added for the report and the dataset card (helper "report") ---------------
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


class DocumentTexts:
    """id → text of every input document, in an SQLite file of the run (Level-2/3 prompts need random access)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._conn = sqlite3.connect(self.path)
        self._conn.execute("CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, text TEXT NOT NULL)")

    def __reduce__(self):  # a Ray worker that unpickles it opens its own connection to the same file
        return DocumentTexts, (self.path,)

    def add(self, documents: Iterable[dict]) -> None:
        try:
            with self._conn:
                self._conn.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?)",
                                       ((d["id"], d["text"]) for d in documents))
        except sqlite3.OperationalError as exc:  # "database or disk is full"
            from .errors import StorageError

            raise StorageError(f"{self.path}: cannot write ({exc}); free space and run the same command again "
                               "(finished work is kept)") from None

    def get(self, doc_id: str) -> str:
        row = self._conn.execute("SELECT text FROM docs WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            raise KeyError(doc_id)
        return row[0]

    def close(self) -> None:
        self._conn.close()

