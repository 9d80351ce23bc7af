"""Where per-shard work runs: in this process (``executor: local``) or on Ray (``executor: ray``).

One interface, chosen once per run (:func:`make_executor`), with two verbs:

- :meth:`Executor.map` runs a picklable per-item function (filter scoring,
  dedup signatures, decontamination look-ups) and returns results in order;
- :meth:`Executor.run_model_stage` runs a model stage over shards, committing
  each shard once (:meth:`~synthllm.store.RunStore.commit_once`) and returning
  the stage's summed counts.

A backend reaches the work as a *factory* (a picklable zero-argument callable,
by default :func:`~synthllm.llm.factory.make_backend` on the run's config):
the local executor builds it once, the first time a shard needs a model, and
Ray workers build their own. So a run that only replays committed shards
loads no model, and nothing live is ever pickled.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import Callable, Sequence, TypeVar

from ..config import Config
from ..llm.base import Backend

T = TypeVar("T")
R = TypeVar("R")
BackendFactory = Callable[[], Backend]


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


def make_executor(config: Config, backend_factory: BackendFactory | None = None, cache=None) -> Executor:
    """The executor ``config.executor`` names.

    Parameters
    ----------
    config : the run configuration.
    backend_factory : builds the backend; default ``make_backend(config)``.
    cache : a :class:`~synthllm.llm.cache.ResponseCache` to use locally
        (default: one opened on ``config.cache_path``).
    """
    if config.executor == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(config, backend_factory)
    from ..llm.factory import make_backend
    from .local import LocalExecutor

    return LocalExecutor(config, backend_factory or functools.partial(make_backend, config), cache)
