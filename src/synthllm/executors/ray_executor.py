"""Running a model stage over shards on a Ray cluster.

The unit of work is the same as on one machine: :func:`~synthllm.executors.local.process_shard`
on one shard. Here it runs inside a pool of Ray actors (``config.ray.num_workers``
of them, each reserving ``num_cpus_per_worker`` CPUs and ``num_gpus_per_worker``
GPUs). Each actor builds its own backend once, in its own process (a loaded
model or an HTTP client is never pickled), and for every shard it is handed:
opens the shared response cache (once per file), runs ``process_shard``, and commits the shard
with :meth:`RunStore.commit_shard` into the run folder. Only the counts travel
back to the driver. The driver skips committed shards, hands out the rest
through :class:`ray.util.ActorPool` (at most one shard in flight per actor, so
a large corpus is never loaded at once), asks ``should_stop`` before each new
shard, and advances the progress bar as shards finish.

Why actors and not Ray Data's ``map_batches``: on this project's reference
machine (2 shared cores) a Ray Data execution costs 14-23 s of fixed overhead
per stage against 4-7 s for an actor pool, and the pipeline runs five to six
stages; the work per shard is identical either way.

Resume and faults
    Shard commits are atomic renames, so concurrent commits from different
    actors are safe and a shard is either wholly committed or absent. The
    SQLite (WAL) response cache is written batch by batch from every actor.
    A worker that dies (killed, OOM, segfault) is restarted by Ray
    (``max_restarts``) and its shard is retried (``max_task_retries``); the
    retry replays the replies the dead worker already cached. A driver that
    dies takes its actors with it; re-running the same command skips the
    committed shards and replays the cache, exactly as the local executor does.

Backends
    Actors build their backend with ``backend_factory()``. By default that is
    :func:`synthllm.pipeline.make_backend` on :func:`per_worker_config`, which
    divides the OpenAI backend's ``max_concurrency``, ``rpm`` and ``tpm`` by
    ``num_workers`` so the cluster as a whole keeps the configured limits.
    Tests (or a dry run) can pass ``backend_factory`` or register one with
    :func:`use_backend_factory`; it must be picklable (a top-level function or
    a :func:`functools.partial` of one).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from ..config import Config
from ..llm.base import Backend
from ..llm.cache import ResponseCache, default_cache_path
from ..progress import StageProgress
from ..stages.base import ModelStage
from ..store import RunStore
from .local import ShardSource, pending_shards, process_shard

BackendFactory = Callable[[], Backend]
"""A picklable zero-argument callable that builds a backend inside a Ray worker."""

#: how often Ray restarts a dead worker and re-runs the shard it held
MAX_RESTARTS = 3

INSTALL_HINT = "executor 'ray' needs Ray: pip install 'synthllm[ray]'  (or: pip install 'ray[data]')"

T = TypeVar("T")
R = TypeVar("R")


class RayNotInstalled(ImportError):
    """``executor: ray`` was asked for but the ``ray`` package is not installed."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayNotInstalled(INSTALL_HINT) from None
    return ray


def connect(config: Config) -> None:
    """Join the Ray cluster named by ``config.ray.address``, unless this process is connected already.

    Parameters
    ----------
    config : run configuration; ``ray.address`` ``None`` starts a local Ray
        on this machine, ``"auto"`` joins the cluster started with
        ``ray start`` on this node, ``ray://host:10001`` a remote one.
    """
    ray = _import_ray()
    if not ray.is_initialized():
        if config.ray.address is None:
            ray.init(include_dashboard=False)  # a local Ray for this run; its dashboard would need extra packages
        else:
            ray.init(address=config.ray.address)


def per_worker_config(config: Config) -> Config:
    """``config`` with the OpenAI backend's limits split evenly over the workers.

    ``max_concurrency``, ``rpm`` and ``tpm`` become ``max(1, limit // num_workers)``,
    so N workers together never exceed the configured limits (unless there
    are more workers than the limit allows, where each still gets 1).

    Parameters
    ----------
    config : the run configuration.

    Returns
    -------
    A copy of ``config``; the original is not changed.
    """
    workers = config.ray.num_workers
    llm = config.llm
    share = {}
    for limit in ("max_concurrency", "rpm", "tpm"):
        value = getattr(llm, limit)
        share[limit] = None if value is None else max(1, value // workers)
    return config.model_copy(update={"llm": llm.model_copy(update=share)})


def default_backend_factory(config: Config) -> BackendFactory:
    """The factory actors use when none is given: ``make_backend`` on the per-worker share of the limits."""
    from ..pipeline import make_backend

    return functools.partial(make_backend, per_worker_config(config))


_registered_factory: BackendFactory | None = None


@contextlib.contextmanager
def use_backend_factory(factory: BackendFactory) -> Iterator[None]:
    """Make Ray workers build their backends with ``factory`` inside this block.

    The hook for tests and dry runs that drive a :class:`~synthllm.Pipeline`
    with ``executor: ray``: the pipeline passes no backend to Ray workers, so
    they would otherwise build the one ``config.llm`` names.

    Parameters
    ----------
    factory : picklable zero-argument callable returning a backend, e.g.
        ``functools.partial(ScriptedBackend, respond)`` with a top-level ``respond``.
    """
    global _registered_factory
    previous, _registered_factory = _registered_factory, factory
    try:
        yield
    finally:
        _registered_factory = previous


class ShardWorker:
    """A Ray actor that runs a model stage's shards: one backend per process, built once.

    Parameters
    ----------
    backend_factory : builds the backend when the actor starts (and again after a restart).
    """

    def __init__(self, backend_factory: BackendFactory):
        self.backend = backend_factory()
        self.caches: dict[str, ResponseCache] = {}

    def run_shard(self, stage: ModelStage, run_root: str, cache_path: str, shard: str, records: list[dict],
                  extra_fields: dict | None) -> tuple[str, dict]:
        """Process one shard and commit it into ``run_root``; returns (shard, its counts).

        A retry of a shard whose first attempt committed before the worker died
        does not redo it: it returns the committed counts.
        """
        store = RunStore(run_root)
        if store.is_committed(stage.name, shard):
            return shard, json.loads((store.stage_dir(stage.name) / f"{shard}.done.json").read_text())
        if cache_path not in self.caches:
            self.caches[cache_path] = ResponseCache(cache_path)
        outputs, rejects, counts = process_shard(stage, records, self.backend, self.caches[cache_path],
                                                 extra_fields)
        store.commit_shard(stage.name, shard, outputs, rejects, counts)
        return shard, counts


class _Pool:
    """The live actor pool, kept from one stage to the next while the workers' settings stay the same."""

    key: str | None = None
    job: str | None = None  # the Ray job (driver connection) that owns the actors
    actors: list = []
    pool = None


def _pool_key(factory: BackendFactory, config: Config) -> str:
    from ray import cloudpickle

    spec = (config.ray.num_workers, config.ray.num_cpus_per_worker, config.ray.num_gpus_per_worker)
    return hashlib.sha256(cloudpickle.dumps(factory) + json.dumps(spec).encode()).hexdigest()


def _worker_pool(ray, factory: BackendFactory, config: Config):
    """An :class:`ActorPool` of ``num_workers`` :class:`ShardWorker` actors, reused when nothing changed."""
    from ray.util import ActorPool

    key = _pool_key(factory, config)
    job = ray.get_runtime_context().get_job_id()
    if (_Pool.key, _Pool.job) != (key, job):
        shutdown_workers()
        worker = ray.remote(ShardWorker).options(
            num_cpus=config.ray.num_cpus_per_worker, num_gpus=config.ray.num_gpus_per_worker,
            max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)
        _Pool.actors = [worker.remote(factory) for _ in range(config.ray.num_workers)]
        _Pool.pool = ActorPool(_Pool.actors)
        _Pool.key, _Pool.job = key, job
    return _Pool.pool


def shutdown_workers() -> None:
    """Stop the shard workers so their CPUs/GPUs go back to the cluster; the next model stage starts new ones.

    Call it when the pipeline closes. Workers of an earlier Ray connection are
    already gone and are just forgotten.
    """
    if _Pool.actors:
        ray = _import_ray()
        if ray.is_initialized() and ray.get_runtime_context().get_job_id() == _Pool.job:
            for actor in _Pool.actors:
                ray.kill(actor)
    _Pool.key, _Pool.job, _Pool.actors, _Pool.pool = None, None, [], None


def run_model_stage_ray(stage: ModelStage, shards: ShardSource, store: RunStore, config: Config,
                        progress: StageProgress | None = None, extra_fields: dict | None = None,
                        should_stop: Callable[[], bool] | None = None,
                        backend_factory: BackendFactory | None = None) -> dict:
    """Run ``stage`` over every shard on Ray workers, committing each; returns the stage's summed counts.

    Same contract and result as :func:`~synthllm.executors.local.run_model_stage`:
    ``{**store.stage_counts(stage.name), "this_run": {model_calls, cached, resumed_records, stopped}}``.

    Parameters
    ----------
    stage : the model stage (pickled once and shared by the workers).
    shards : ``(name, load, size)`` triples; ``load`` runs in the driver, so it may read driver-side files.
    store : the run folder; workers commit into ``store.root``, which on a
        multi-node cluster must be on a filesystem every node mounts at the same path.
    config : run configuration (``ray`` section, ``llm``, ``cache_path``).
    progress : advanced as shards finish.
    extra_fields : stamped on every output record (e.g. the seed).
    should_stop : asked before each new shard; when it says yes, the shards in
        flight finish and the stage returns with ``this_run["stopped"]`` set.
    backend_factory : builds each worker's backend; default: the one
        registered with :func:`use_backend_factory`, else :func:`default_backend_factory`.

    Raises
    ------
    RayNotInstalled : when ``ray`` cannot be imported.
    """
    ray = _import_ray()
    connect(config)
    factory = backend_factory or _registered_factory or default_backend_factory(config)
    cache_path = str(Path(config.cache_path) if config.cache_path else default_cache_path())
    this_run = {"model_calls": 0, "cached": 0, "resumed_records": 0, "stopped": False}
    pool = None  # started at the first shard that needs work: a finished stage costs no workers
    stage_ref = ray.put(stage)
    sizes: dict[str, int] = {}

    def collect_one() -> None:
        try:
            shard, counts = pool.get_next_unordered()
        except ray.exceptions.RayTaskError as exc:  # the stage's own error, raised as itself
            raise exc.as_instanceof_cause() from None
        this_run["model_calls"] += counts["model_calls"]
        this_run["cached"] += counts["cached"]
        if progress:
            progress.advance(sizes.pop(shard))
            progress.tokens(counts["completion_tokens"])

    def submit(actor, job: tuple[str, list[dict]]):
        shard, records = job
        return actor.run_shard.remote(stage_ref, str(store.root), cache_path, shard, records, extra_fields)

    try:
        for shard, load, size in pending_shards(stage.name, shards, store, this_run, progress, should_stop):
            if pool is None:
                pool = _worker_pool(ray, factory, config)
            while not pool.has_free():
                collect_one()
            sizes[shard] = size
            pool.submit(submit, (shard, load()))
        while pool is not None and pool.has_next():
            collect_one()
    except BaseException:
        # an error or Ctrl-C: in-flight shards are abandoned (their replies stay cached)
        shutdown_workers()
        raise
    return {**store.stage_counts(stage.name), "this_run": this_run}


def ray_map_shards(fn: Callable[[T], R], items: Iterable[T], config: Config,
                   num_cpus: float | None = None) -> list[R]:
    """``[fn(item) for item in items]``, each call a Ray task; results in input order.

    For per-shard work that needs no model (document embeddings for the
    filter, MinHash signatures for dedup, decontamination look-ups): make the
    items small shard descriptors (e.g. ``(run_root, stage, shard)``) and let
    ``fn`` read its shard from the run folder and write or return its result,
    then reduce in the driver. A task whose worker dies is retried.

    Parameters
    ----------
    fn : picklable callable of one item (a top-level function, a builtin, a partial of one).
    items : the inputs; each is pickled to its task.
    config : run configuration (``ray.address``; ``ray.num_cpus_per_worker`` is the default per task).
    num_cpus : CPUs reserved by each task, when it differs from a model worker's.

    Returns
    -------
    The results, in the order of ``items``.
    """
    ray = _import_ray()
    connect(config)
    shutdown_workers()  # idle model workers would hold the CPUs these tasks need
    cpus = config.ray.num_cpus_per_worker if num_cpus is None else num_cpus
    task = ray.remote(_apply).options(num_cpus=cpus, max_retries=MAX_RESTARTS)
    fn_ref = ray.put(fn)
    return ray.get([task.remote(fn_ref, item) for item in items])


def _apply(fn: Callable[[T], R], item: T) -> R:
    """One item of :func:`ray_map_shards` (a plain function, so ``fn`` may be any callable: a builtin, a partial)."""
    return fn(item)
