"""One response cache shared by all runs and stages.

SQLite in WAL mode: readers never block the writer, concurrent writer
processes are serialised by SQLite's own locking (with a busy timeout), and a
committed transaction survives ``kill -9``. Keys are
:meth:`ChatRequest.cache_key` hashes of (model, sampling, messages, sample
index). Parsing happens after the cache, so changing a parser never causes a
model call: the raw reply is what is stored.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable

from .base import ChatResponse

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode (only an OS
        # crash can lose the last transactions), and far cheaper than FULL.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)

    def get_many(self, keys: Iterable[str]) -> dict[str, ChatResponse]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, ChatResponse] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute("SELECT key, text, prompt_tokens, completion_tokens, finish_reason "
                                          f"FROM replies WHERE key IN ({marks})", chunk)
                for key, text, prompt_tokens, completion_tokens, finish in rows:
                    found[key] = ChatResponse(text, prompt_tokens, completion_tokens, finish, cached=True)
        return found

    def put_many(self, items: Iterable[tuple[str, str, ChatResponse]]) -> int:
        """Store (key, model, response) triples in one transaction; returns how many were stored."""
        now = time.time()
        rows = [(key, model, resp.text, resp.prompt_tokens, resp.completion_tokens, resp.finish_reason, now)
                for key, model, resp in items if resp.ok]
        if not rows:
            return 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR IGNORE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return len(rows)

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
