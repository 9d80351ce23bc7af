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

from ..config import Config
from .base import BackendFactory, Executor, Shard

__all__ = ["BackendFactory", "Executor", "Shard", "make_executor"]


def make_executor(config: Config, backend_factory: BackendFactory | None = None, cache=None,
                  state_dir=None) -> Executor:
    """The executor ``config.executor`` names.

    Parameters
    ----------
    config : the run configuration.
    backend_factory : builds the backend; default ``make_backend(config)``.
    cache : a :class:`~synthllm.llm.cache.ResponseCache` to use locally
        (default: one opened on ``config.cache_path``).
    state_dir : a folder the default backend may own (batch jobs' state, the vLLM server's log).
    """
    if config.executor == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(config, backend_factory)
    from ..llm.factory import make_backend
    from .local import LocalExecutor

    return LocalExecutor(config, backend_factory or functools.partial(make_backend, config, state_dir=state_dir),
                         cache)
