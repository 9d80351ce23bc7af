"""One OpenAI concurrency and rate budget for every Ray worker of a cluster.

Each Ray worker builds its own :class:`~synthllm.llm.openai_backend.OpenAIBackend`,
and each backend enforces ``max_concurrency``, ``rpm`` and ``tpm`` on its own:
N workers with the full limits would send N times too much, and N workers
with ``limit // N`` each leave an idle worker's share unused. Here one named
async Ray actor (:class:`SharedLimits` run by Ray) holds the cluster's limits, and every
worker's backend takes a lease from it for each attempt
(``shared_budget=RayBudget(actor)``). Workers keep the full limits locally,
so one busy worker can use the whole budget while the others idle.

Leases
    :meth:`SharedLimits.acquire` waits, first come first served, for a free
    slot, one request of the rpm bucket and the attempt's tokens of the tpm
    bucket, and returns a lease; :meth:`SharedLimits.release` frees it and
    gives back the tokens the server did not use. A worker that dies (OOM,
    kill; Ray restarts it) never releases its leases, so a lease older than
    ``lease_seconds`` is taken back: without that, a few deaths would use up
    the slots and stall the whole cluster. The lease must outlast any live
    attempt (:func:`cluster_backend_factory` derives it from the request
    timeout); a release that comes after its lease expired is ignored.

Wiring
    On the driver, once Ray is initialised, :func:`cluster_backend_factory`
    creates (or finds) the named actor and returns the picklable factory that
    the shard workers call to build their backends.

Importing this module does not import Ray.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import time
import uuid
from typing import Callable

from ..config import Config
from ..llm.base import Backend
from ..llm.openai_backend import _TokenBucket

#: concurrent method calls the budget actor runs (each waiting ``acquire`` is one; they only await)
ACTOR_CONCURRENCY = 10_000

#: seconds added to twice the request timeout for a lease's lifetime (scheduling, a busy worker)
LEASE_MARGIN = 60.0

#: the driver's handles of the budget actors, by name: Ray ends an actor that is not detached once
#: its creator drops every handle, even a named one, and workers look it up by name only
_actors: dict[str, object] = {}


class SharedLimits:
    """Concurrency, requests-per-minute and tokens-per-minute limits shared by many backends.

    A plain asyncio class, used on one event loop; :func:`cluster_budget` runs
    it as a Ray actor. Implements :class:`~synthllm.llm.openai_backend.SharedBudget`.

    Parameters
    ----------
    max_concurrency : leases out at once.
    rpm, tpm : requests and tokens per minute (buckets as in the OpenAI
        backend: refilled continuously, one second deep); None for no limit.
    lease_seconds : age at which an unreleased lease is taken back (its
        holder is presumed dead); None: never.
    """

    def __init__(self, max_concurrency: int, rpm: int | None = None, tpm: int | None = None,
                 lease_seconds: float | None = None):
        for name, value in (("max_concurrency", max_concurrency), ("rpm", rpm), ("tpm", tpm),
                            ("lease_seconds", lease_seconds)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.max_concurrency, self.rpm, self.tpm, self.lease_seconds = max_concurrency, rpm, tpm, lease_seconds
        self._request_bucket = _TokenBucket(rpm) if rpm else None
        self._token_bucket = _TokenBucket(tpm) if tpm else None
        # lease -> expiry (time.monotonic()); granted in order with one lifetime, so the first expires first
        self._leases: dict[str, float] = {}
        self._queue = asyncio.Lock()  # first come, first served: one acquirer waits at a time
        self._freed = asyncio.Event()
        self._totals = {"acquired": 0, "released": 0, "expired": 0, "peak_in_flight": 0,
                        "tokens_reserved": 0.0, "tokens_returned": 0.0}

    async def acquire(self, tokens: float) -> str:
        """Wait for a free slot, one request of ``rpm`` and ``tokens`` of ``tpm``; returns the lease.

        Parameters
        ----------
        tokens : tokens reserved for the attempt (ignored without ``tpm``).

        Returns
        -------
        str : the lease, for :meth:`release`.
        """
        async with self._queue:
            while not self._slot_free():
                self._freed.clear()
                try:
                    await asyncio.wait_for(self._freed.wait(), self._until_first_expiry())
                except TimeoutError:
                    pass  # the oldest lease expired: _slot_free takes it back
            # The slot comes first, so a request is sent as soon as it passes the buckets
            # and arrivals at the server follow the buckets' pace.
            if self._request_bucket is not None:
                await self._request_bucket.take(1)
            if self._token_bucket is not None:
                await self._token_bucket.take(tokens)
            lease = uuid.uuid4().hex  # unique across actor restarts, unlike a counter
            self._leases[lease] = math.inf if self.lease_seconds is None else time.monotonic() + self.lease_seconds
            self._totals["acquired"] += 1
            self._totals["tokens_reserved"] += tokens
            self._totals["peak_in_flight"] = max(self._totals["peak_in_flight"], len(self._leases))
            return lease

    async def release(self, lease: str, unused_tokens: float = 0.0) -> None:
        """Free ``lease``'s slot and give back ``unused_tokens``; an expired or unknown lease is ignored.

        Parameters
        ----------
        lease : what :meth:`acquire` returned.
        unused_tokens : reserved tokens the attempt did not use.
        """
        if self._leases.pop(lease, None) is None:
            return
        self._totals["released"] += 1
        if self._token_bucket is not None and unused_tokens > 0:
            self._token_bucket.give_back(unused_tokens)
            self._totals["tokens_returned"] += unused_tokens
        self._freed.set()

    async def stats(self) -> dict:
        """The limits, the leases out now (``in_flight``) and totals since the start.

        Totals: acquired, released, expired, peak_in_flight, tokens_reserved, tokens_returned.
        """
        self._expire()
        return {"max_concurrency": self.max_concurrency, "rpm": self.rpm, "tpm": self.tpm,
                "lease_seconds": self.lease_seconds, "in_flight": len(self._leases), **self._totals}

    def _slot_free(self) -> bool:
        self._expire()
        return len(self._leases) < self.max_concurrency

    def _expire(self) -> None:
        now = time.monotonic()
        while self._leases:
            lease, expiry = next(iter(self._leases.items()))
            if expiry > now:
                return
            del self._leases[lease]
            self._totals["expired"] += 1

    def _until_first_expiry(self) -> float | None:
        if self.lease_seconds is None:
            return None
        return max(0.0, next(iter(self._leases.values())) - time.monotonic())


@functools.cache
def _actor_class():
    """``ray.remote(SharedLimits)``, the budget actor's class, made on first use (importing this module needs no Ray)."""
    import ray

    return ray.remote(SharedLimits)


class RayBudget:
    """The :class:`~synthllm.llm.openai_backend.SharedBudget` of a budget actor, for one backend.

    Parameters
    ----------
    actor : the budget actor's handle (e.g. ``ray.get_actor(name)``).
    """

    def __init__(self, actor):
        self.actor = actor

    async def acquire(self, tokens: float) -> str:
        """Wait for the actor to grant a lease (see :meth:`SharedLimits.acquire`)."""
        granted = self.actor.acquire.remote(tokens)
        try:
            return await granted
        except asyncio.CancelledError:
            # Cancelling the await does not stop the actor's call: let the actor release the lease
            # as soon as it grants it (Ray resolves `granted` before running `release`).
            self.actor.release.remote(granted, tokens)
            raise

    async def release(self, lease: str, unused_tokens: float) -> None:
        """Hand ``lease`` back without waiting for the actor (see :meth:`SharedLimits.release`)."""
        self.actor.release.remote(lease, unused_tokens)


def cluster_budget(name: str, max_concurrency: int, rpm: int | None = None, tpm: int | None = None,
                   lease_seconds: float | None = None):
    """Create the named budget actor, or get it when it exists; returns its handle.

    Call on the driver after Ray is initialised. The actor takes no CPU and
    lives as long as the driver's Ray job (this module keeps its handle); Ray
    restarts it if it dies (its leases are then forgotten, so the limits may
    be exceeded for one round).

    Parameters
    ----------
    name : the actor's name in the job's Ray namespace.
    max_concurrency, rpm, tpm, lease_seconds : see :class:`SharedLimits`.

    Raises
    ------
    ValueError : an actor of that name exists with other limits.
    """
    import ray

    actor = _actor_class().options(name=name, get_if_exists=True, num_cpus=0, max_concurrency=ACTOR_CONCURRENCY,
                                   max_restarts=-1, max_task_retries=-1).remote(max_concurrency, rpm, tpm,
                                                                                lease_seconds)
    wanted = {"max_concurrency": max_concurrency, "rpm": rpm, "tpm": tpm, "lease_seconds": lease_seconds}
    stats = ray.get(actor.stats.remote())
    found = {key: stats[key] for key in wanted}
    if found != wanted:
        raise ValueError(f"the budget actor {name!r} already exists with limits {found}, not {wanted}; "
                         "use another name for these limits")
    _actors[name] = actor
    return actor


def cluster_backend_factory(config: Config, name: str | None = None) -> Callable[[], Backend]:
    """A picklable factory for Ray workers' backends that share one budget of ``config.llm``'s limits.

    For the OpenAI backend, creates (or gets) the budget actor
    ``name`` with ``config.llm``'s ``max_concurrency``, ``rpm`` and ``tpm``;
    each worker's backend keeps these limits locally too and takes a lease per
    attempt. Leases expire after ``2 * timeout + LEASE_MARGIN`` seconds. Call
    on the driver after Ray is initialised.

    Parameters
    ----------
    config : the run configuration.
    name : the budget actor's name; workers find it by this name. Default:
        one name per server, model and limits, so the pipelines of one driver
        that send to the same server with the same limits share a budget.

    Returns
    -------
    A zero-argument callable (a :func:`functools.partial`) that builds the
    backend inside a worker; for other backends, ``make_backend`` on ``config``.

    Raises
    ------
    ValueError : an actor named ``name`` exists with other limits.
    """
    from ..llm.factory import make_backend

    llm = config.llm
    if llm.backend != "openai":
        return functools.partial(make_backend, config)
    # An attempt is abandoned after `timeout`, but the HTTP client times connecting and reading
    # separately; a lease that expired under a live attempt only lets the limit be exceeded briefly.
    lease_seconds = 2 * llm.timeout + LEASE_MARGIN
    if name is None:
        spec = [llm.base_url, llm.model, llm.max_concurrency, llm.rpm, llm.tpm, lease_seconds]
        name = "synthllm-budget-" + hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:12]
    cluster_budget(name, llm.max_concurrency, llm.rpm, llm.tpm, lease_seconds)
    return functools.partial(_budgeted_backend, config, name)


def _budgeted_backend(config: Config, name: str) -> Backend:
    """``make_backend(config)`` with the budget actor ``name`` as its shared budget (runs in the worker)."""
    import ray

    from ..llm.factory import make_backend

    return make_backend(config, shared_budget=RayBudget(ray.get_actor(name)))
