"""Where per-shard work runs: in this process (``executor: local``) or on Ray (``executor: ray``).

Model stages go through :func:`~synthllm.executors.local.run_model_stage` or
:func:`~synthllm.executors.ray_executor.run_model_stage_ray`; the steps without
a model (filter scoring, dedup signatures, decontamination look-ups) through
:func:`map_items`. Either way the work on one shard is the same function.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from ..config import Config

T = TypeVar("T")
R = TypeVar("R")


def map_items(fn: Callable[[T], R], items: Sequence[T], config: Config,
              on_result: Callable[[int, R], None] | None = None) -> list[R]:
    """``[fn(item) for item in items]`` on the configured executor; results in input order.

    Parameters
    ----------
    fn : picklable callable of one item (a top-level function, a
        :func:`functools.partial` of one, or an instance of a top-level class).
    items : small per-shard descriptors, e.g. a shard loader.
    config : run configuration; ``executor: ray`` runs ``fn`` as a Ray Data
        transformation (:func:`~synthllm.executors.ray_executor.ray_map`).
    on_result : called with ``(index, result)`` as each item finishes (progress bars).

    Returns
    -------
    The results, in the order of ``items``.
    """
    if config.executor == "ray":
        from .ray_executor import ray_map

        return ray_map(fn, items, config, on_result=on_result)
    results = []
    for index, item in enumerate(items):
        results.append(fn(item))
        if on_result is not None:
            on_result(index, results[-1])
    return results
