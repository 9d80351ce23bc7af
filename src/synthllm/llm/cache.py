"""One response cache shared by all runs and stages.

SQLite in WAL mode: readers never block the writer, concurrent writer
processes are serialised by SQLite's own locking (with a busy timeout), and a
committed transaction survives ``kill -9``. Keys are
:meth:`ChatRequest.cache_key` hashes of (model, sampling, messages, sample
index). Parsing happens after the cache, so changing a parser never causes a
model call: the raw reply is what is stored.

A cache that cannot be used (``cache_path`` is a folder or not a SQLite file,
the disk is full, an I/O error) raises :class:`CacheError`, one line naming
the cache file, instead of a ``sqlite3`` traceback. On a full disk the failed
transaction is rolled back, so the replies already stored stay valid.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from .base import ChatResponse


class CacheError(InputError):
    """The response cache named by ``cache_path`` cannot be used; the message names the file."""

# One column per response field: no JSON encoding on the per-request path.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    """``$SYNTHLLM_CACHE`` if set, else ``$XDG_CACHE_HOME/synthllm/responses.sqlite3``."""
    if os.environ.get("SYNTHLLM_CACHE"):
        return Path(os.environ["SYNTHLLM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "synthllm" / "responses.sqlite3"


class ResponseCache:
    """A persistent map from request key to model response.

    Parameters
    ----------
    path : path of the SQLite file; created with its folder if missing.

    Only successful responses are stored: a failed request is retried on the
    next run rather than replayed as a failure.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_cache_path()
        if self.path.is_dir():
            raise CacheError(f"{self.path}: cache_path is a folder; name a file, "
                             f"e.g. {self.path / 'responses.sqlite3'}")
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise self._error("cannot open", exc) from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode (only an OS
            # crash can lose the last transactions), and far cheaper than FULL.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            self._conn.close()
            raise self._error("cannot open", exc) from None

    def _error(self, doing: str, exc: BaseException) -> CacheError:
        """A one-line :class:`CacheError` naming the cache file and what went wrong."""
        name = getattr(exc, "sqlite_errorname", "")
        if name == "SQLITE_FULL" or getattr(exc, "errno", None) == errno.ENOSPC:
            what = "disk full; free space or set cache_path to another disk (stored replies are kept)"
        elif name == "SQLITE_NOTADB":
            what = "not a SQLite file; point cache_path at a new file"
        else:
            what = getattr(exc, "strerror", None) or str(exc)
        return CacheError(f"{self.path}: response cache: {doing}: {what}")

    def get_many(self, keys: Iterable[str]) -> dict[str, ChatResponse]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, ChatResponse] = {}
        with self._lock:
            try:
                for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                    chunk = keys[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = self._conn.execute("SELECT key, text, prompt_tokens, completion_tokens, finish_reason "
                                              f"FROM replies WHERE key IN ({marks})", chunk)
                    for key, text, prompt_tokens, completion_tokens, finish in rows:
                        found[key] = ChatResponse(text, prompt_tokens, completion_tokens, finish, cached=True)
            except sqlite3.Error as exc:
                raise self._error("cannot read", exc) from None
        return found

    def put_many(self, items: Iterable[tuple[str, str, ChatResponse]]) -> int:
        """Store (key, model, response) triples in one transaction; returns how many were stored."""
        now = time.time()
        rows = [(key, model, resp.text, resp.prompt_tokens, resp.completion_tokens, resp.finish_reason, now)
                for key, model, resp in items if resp.ok]
        if not rows:
            return 0
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany("INSERT OR IGNORE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error("cannot store replies", exc) from None
        return len(rows)

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
