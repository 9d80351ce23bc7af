"""Running per-shard work on a Ray cluster with Ray Data.

The unit of work is the same as on one machine. For a model stage it is
:func:`~synthllm.executors.local.process_shard` on one shard; for the steps
without a model (filter scoring, dedup signatures, decontamination look-ups)
it is the per-shard function the local executor calls in a loop. Here each
shard is one row of a Ray Data dataset, and the work is a ``map_batches``
transformation (``batch_size=1``) running as Ray tasks, ``ray.num_workers``
at a time. The driver reads the results as they stream back (advancing the
progress bar) and does the reduce steps itself.

Tasks, not an actor pool: Ray reuses its worker processes across tasks and
across datasets, so a model kept in a per-process cache is loaded once per
process per run, while an actor pool is started afresh for every dataset
(2.8 s per step on the reference machine against 0.15 s for tasks). GPU
steps are the exception: Ray never reuses a GPU task's process, so they run
in an actor pool that keeps its GPUs and models for the step.

Rows are small: a shard's name and its pickled loader. A worker loads its
shard's records itself from the run folder (which, on a multi-node cluster,
must be on a filesystem every node mounts at the same path), so the corpus
never passes through the driver or the object store all at once.

Model stages
    Each worker process builds its backend once, for its first shard (a
    loaded model or an HTTP client is never pickled), opens the shared
    response cache, runs ``process_shard`` and commits the shard with
    :meth:`RunStore.commit_shard`. Only the counts travel back. OpenAI backends take a lease per request from
    one cluster-wide budget actor (:mod:`synthllm.executors.ray_budget`), so
    ``max_concurrency``, ``rpm`` and ``tpm`` hold for the whole cluster.

Resume and faults
    Shard commits are atomic renames, so concurrent commits from different
    workers are safe and a shard is either wholly committed or absent. The
    SQLite (WAL) response cache is written batch by batch from every worker.
    A worker that dies (killed, OOM, segfault) is replaced by Ray and its
    shard's task retried; the retry replays the replies the dead worker had
    cached, and a shard the dead worker had already committed is not redone.
    A driver that dies takes its tasks with it; re-running the same command
    skips the committed shards and replays the cache, as the local executor
    does.

Errors
    An exception raised by the work on a shard (a bug, a backend that refuses
    every request) is sent back as a result and raised in the driver as
    itself, with the worker's traceback as a note; the stage stops there and
    committed shards stay.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from ..config import Config
from ..errors import MissingDependency
from ..llm.base import Backend
from ..llm.cache import ResponseCache, default_cache_path
from ..stages.base import ModelStage
from ..store import RunStore
from .base import BackendFactory, Executor
from .local import new_this_run, pending_shards, run_shard
from .ray_budget import cluster_backend_factory

INSTALL_HINT = "executor 'ray' needs Ray: pip install 'synthllm[ray]'  (or: pip install 'ray[data]')"

T = TypeVar("T")
R = TypeVar("R")


class RayNotInstalled(MissingDependency):
    """``executor: ray`` was asked for but the ``ray`` package is not installed."""


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the extra is ray[data]; plain ray lacks it)
    except ImportError as error:  # e.g. plain `ray` without Ray Data's own dependencies (pandas)
        raise RayNotInstalled(f"{INSTALL_HINT}; {error}") from None
    return ray


def connect(config: Config) -> None:
    """Join the Ray cluster named by ``config.ray.address``, unless this process is connected already.

    Also sets this driver's Ray Data context: no progress bars or
    per-execution log lines (synthllm draws its own bars and stage
    summaries), no per-operator resource reservation.

    Parameters
    ----------
    config : run (or study) configuration; ``ray.address`` ``None`` starts a local Ray
        on this machine, ``"auto"`` joins the cluster started with
        ``ray start`` on this node, ``ray://host:10001`` a remote one.
    """
    ray = _import_ray()
    if not ray.is_initialized():
        if config.ray.address is None:
            ray.init(include_dashboard=False)  # a local Ray for this run; its dashboard would need extra packages
        else:
            ray.init(address=config.ray.address)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # Reservations share a cluster's resources between the operators of a multi-step dataset;
    # synthllm's datasets are one map over shard rows, and on a small cluster the reservation
    # delayed the first task by ~3 s per step (0.15 s without it, bench/results/ray.md).
    context.op_resource_reservation_enabled = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


class _ShardError:
    """An exception raised by the work on one item, carried back to the driver as a result."""

    def __init__(self, error: BaseException):
        self.error = error
        self.worker_traceback = "".join(traceback.format_exception(error))

    def raise_it(self):
        self.error.add_note(f"raised in a Ray worker:\n{self.worker_traceback}")
        raise self.error


def _apply_to_rows(batch: dict, fn: Callable) -> dict:
    """The Ray Data UDF: ``fn`` on each row's pickled item; an exception becomes the item's result."""
    from ray import cloudpickle

    results = []
    for item in batch["item"]:
        try:
            result = fn(cloudpickle.loads(item))
        except Exception as error:  # noqa: BLE001  (re-raised in the driver as itself)
            result = _ShardError(error)
        results.append(cloudpickle.dumps(result))
    return {"index": batch["index"], "result": results}


class _ApplyToRowsInActor:
    """:func:`_apply_to_rows` as a Ray Data actor class, for GPU steps (see :func:`ray_map`)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, batch: dict) -> dict:
        return _apply_to_rows(batch, self.fn)


def ray_map(fn: Callable[[T], R], items: Sequence[T], config: Config, num_cpus: float | None = None,
            num_gpus: float = 0.0, on_result: Callable[[int, R], None] | None = None,
            should_stop: Callable[[], bool] | None = None, actors: bool | None = None) -> list[R | None]:
    """``[fn(item) for item in items]`` as a Ray Data ``map_batches``; results in input order.

    The transformation runs as Ray tasks, at most ``ray.num_workers`` at a
    time. Ray reuses its worker processes from task to task and from one call
    to the next, so state that must outlive one item (a loaded model) belongs
    in a per-process cache (:func:`worker_backend`, the embedder's ``lru_cache``).
    Steps that reserve GPUs run in an actor pool of ``ray.num_workers``
    actors instead: Ray never reuses a GPU task's process (``max_calls=1``),
    so tasks would load the model for every shard, while an actor keeps its
    GPU and its model for the whole step.

    Parameters
    ----------
    fn : picklable callable of one item.
    items : the inputs, one dataset row each (pickled: keep them small, e.g.
        a shard name and a loader that reads the shard in the worker).
    config : run configuration: ``ray.address``, ``ray.num_workers`` (tasks at
        once), ``ray.num_cpus_per_worker`` (the default of ``num_cpus``).
    num_cpus, num_gpus : resources each task reserves.
    on_result : called in the driver with ``(index, result)`` as each item finishes (any order).
    should_stop : asked after each result; when it says yes, the items in
        flight are abandoned and the unfinished ones are ``None`` in the result.
    actors : run in an actor pool (``True``) or as tasks (``False``); default:
        actors exactly when ``num_gpus > 0``.

    Returns
    -------
    The results, in the order of ``items``.

    Raises
    ------
    RayNotInstalled : when ``ray[data]`` cannot be imported.
    Exception : the first exception ``fn`` raised in a worker, as itself.
    """
    results: list[R | None] = [None] * len(items)
    if not items:
        return results
    ray = _import_ray()
    connect(config)
    from ray import cloudpickle

    rows = [{"index": index, "item": cloudpickle.dumps(item)} for index, item in enumerate(items)]
    size = min(config.ray.num_workers, len(rows))
    if num_gpus > 0 if actors is None else actors:
        udf = {"fn": _ApplyToRowsInActor, "fn_constructor_kwargs": {"fn": fn},
               "compute": ray.data.ActorPoolStrategy(size=size)}
    else:
        udf = {"fn": _apply_to_rows, "fn_kwargs": {"fn": fn}, "compute": ray.data.TaskPoolStrategy(size=size)}
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        **udf, batch_size=1, num_cpus=config.ray.num_cpus_per_worker if num_cpus is None else num_cpus,
        num_gpus=num_gpus)
    for row in dataset.iter_rows():
        result = cloudpickle.loads(row["result"])
        if isinstance(result, _ShardError):
            result.raise_it()
        results[row["index"]] = result
        if on_result is not None:
            on_result(row["index"], result)
        if should_stop is not None and should_stop():
            break
    return results


class _WorkerState:
    """This process's backend and response caches, kept from shard to shard and stage to stage."""

    backend_key: str | None = None
    backend: Backend | None = None
    caches: dict[str, ResponseCache] = {}


def worker_backend(key: str, factory: BackendFactory) -> Backend:
    """The backend ``factory`` builds, built once per worker process and reused while ``key`` stays the same.

    Ray runs every shard of every stage in a small set of reused worker
    processes, so a model is loaded once per process per run. A different
    ``key`` (another model or settings) closes the old backend first.

    Parameters
    ----------
    key : identifies the factory (e.g. a digest of its pickle).
    factory : builds the backend.
    """
    if _WorkerState.backend_key != key:
        if _WorkerState.backend is not None:
            _WorkerState.backend.close()
        _WorkerState.backend_key, _WorkerState.backend = None, None
        _WorkerState.backend = factory()
        _WorkerState.backend_key = key
    return _WorkerState.backend


def _worker_cache(path: str) -> ResponseCache:
    if path not in _WorkerState.caches:
        _WorkerState.caches[path] = ResponseCache(path)
    return _WorkerState.caches[path]


class StageOnShard:
    """A model stage's work on one shard, as a Ray worker does it: :func:`~synthllm.executors.local.run_shard`.

    Picklable; the backend comes from :func:`worker_backend`, so a worker
    process builds it once (and not at all for a shard committed already,
    e.g. by a first attempt whose worker died after the commit).

    Parameters
    ----------
    stage : the model stage.
    run_root : the run folder the shards are committed into.
    cache_path : the response cache file.
    backend_factory : builds the backend in the worker.
    extra_fields : stamped on every output record (e.g. the seed).
    """

    def __init__(self, stage: ModelStage, run_root: str, cache_path: str, backend_factory: BackendFactory,
                 extra_fields: dict | None):
        from ray import cloudpickle

        self.stage, self.run_root, self.cache_path = stage, run_root, cache_path
        self.backend_factory, self.extra_fields = backend_factory, extra_fields
        self.backend_key = hashlib.sha256(cloudpickle.dumps(backend_factory)).hexdigest()

    def __call__(self, job: tuple[str, Callable[[], list[dict]]]) -> tuple[dict, bool]:
        """Process one ``(shard, load)`` and commit it; returns ``(counts, committed)``."""
        shard, load = job
        return run_shard(self.stage, shard, load, RunStore(self.run_root),
                         lambda: worker_backend(self.backend_key, self.backend_factory),
                         _worker_cache(self.cache_path), self.extra_fields)


class RayExecutor(Executor):
    """Per-shard work as Ray Data transformations (see the module docstring).

    Parameters
    ----------
    config : run configuration (``ray`` section, ``llm``, ``cache_path``).
    backend_factory : builds each worker's backend; default
        :func:`~synthllm.executors.ray_budget.cluster_backend_factory` (the
        backend ``config.llm`` names; OpenAI backends share one cluster-wide budget).
    """

    def __init__(self, config: Config, backend_factory: BackendFactory | None = None):
        super().__init__(config, backend_factory, config.cache_path)
        _import_ray()
        ResponseCache(self.cache_path).close()  # a bad cache_path fails here, in one line, not in every worker

    def map(self, fn, items, on_result=None, should_stop=None):
        return ray_map(fn, items, self.config, on_result=on_result, should_stop=should_stop)

    def run_model_stage(self, stage, shards, store, progress=None, extra_fields=None, should_stop=None) -> dict:
        """Same contract as the local executor's; when ``should_stop`` says yes, shards in flight are
        abandoned rather than finished (their replies stay cached for the next run)."""
        connect(self.config)
        this_run = new_this_run()
        jobs, sizes = [], []
        for shard, load, size in pending_shards(stage.name, shards, store, this_run, progress, should_stop):
            jobs.append((shard, load))
            sizes.append(size)
        if jobs:
            factory = self.backend_factory or cluster_backend_factory(self.config)
            cache_path = str(Path(self.cache_path) if self.cache_path else default_cache_path())
            work = StageOnShard(stage, str(store.root), cache_path, factory, extra_fields)

            def finished(index: int, result: tuple[dict, bool]) -> None:
                counts, committed = result
                this_run["model_calls"] += counts["model_calls"]
                this_run["cached"] += counts["cached"]
                if not committed:
                    this_run["pending"] += sizes[index]
                if progress:
                    progress.advance(sizes[index])
                    progress.tokens(counts["completion_tokens"])

            done = ray_map(work, jobs, self.config, num_gpus=self.config.ray.num_gpus_per_worker,
                           on_result=finished, should_stop=should_stop)
            this_run["stopped"] = this_run["stopped"] or any(result is None for result in done)
        return {**store.stage_counts(stage.name), "this_run": this_run}
