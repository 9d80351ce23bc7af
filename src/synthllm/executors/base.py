"""The executor interface (see :mod:`synthllm.executors`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from ..config import Config
from ..llm.base import Backend

T = TypeVar("T")
R = TypeVar("R")
BackendFactory = Callable[[], Backend]


@dataclass
class Shard:
    """A shard as an executor sees it: name, loader of its records, number of records."""

    name: str
    load: Callable[[], list[dict]]
    size: int
    ids: list[str] | None = None  # for a sample of documents: the chosen ids, in document order

    def __iter__(self):  # unpacks as the executor's (name, load, size)
        return iter((self.name, self.load, self.size))


class Executor(ABC):
    """Runs a run's per-shard work.

    Parameters
    ----------
    config : the run configuration.
    backend_factory : builds the model backend (picklable for Ray).
    cache_path : the response cache file (``None``: the default location).
    """

    def __init__(self, config: Config, backend_factory: BackendFactory, cache_path=None):
        self.config = config
        self.backend_factory = backend_factory
        self.cache_path = cache_path

    @abstractmethod
    def map(self, fn: Callable[[T], R], items: Sequence[T], on_result: Callable[[int, R], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> list[R | None]:
        """``[fn(item) for item in items]``, results in input order (``None`` for items skipped by a stop)."""

    @abstractmethod
    def run_model_stage(self, stage, shards, store, progress=None, extra_fields: dict | None = None,
                        should_stop: Callable[[], bool] | None = None) -> dict:
        """Run ``stage`` over ``(name, load, size)`` shards, committing each; returns the stage's counts.

        The counts are summed over all committed shards (earlier runs'
        included), plus ``this_run``: ``model_calls``, ``cached``,
        ``resumed_records`` (inputs of shards committed before), ``pending``
        (inputs of shards left uncommitted because requests failed for a
        transient reason; the next run retries them) and ``stopped``.
        """

    def describe_backend(self) -> dict | None:
        """What the backend says about itself (model, dtype, constrained decoding), if one was built here."""
        return None

    def close(self) -> None:
        """Release what the executor holds (a loaded model, HTTP clients, the cache)."""
