"""The shared budget: backends in several Ray workers keep one max_concurrency/rpm/tpm between them.

The server is a real loopback HTTP server (the fault proxy's canned replies,
each held back ``delay`` seconds) that records how many requests it holds at
once. The first tests need no Ray: the budget's core is a plain asyncio class.
"""

from __future__ import annotations

import asyncio
import functools
import pickle
import time

import pytest

from synthllm.config import load_config
from synthllm.executors.ray_budget import (RayBudget, SharedLimits, _budgeted_backend, cluster_backend_factory,
                                           cluster_budget)
from synthllm.llm.base import ChatRequest, Sampling
from synthllm.llm.fault_proxy import FaultProxy
from synthllm.llm.openai_backend import BackendUnavailable, OpenAIBackend
from synthllm.llm.factory import make_backend


class SlowServer(FaultProxy):
    """The fault proxy without upstream, each canned reply held back ``delay`` seconds; tracks ``peak`` in flight."""

    def __init__(self, delay: float, schedule=None, default: str = "pass"):
        super().__init__(None, schedule, default)
        self.delay = delay
        self.in_flight = self.peak = 0

    async def _pass(self, *args):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return await super()._pass(*args)
        finally:
            self.in_flight -= 1


@pytest.fixture
def slow_server():
    """Factory: ``slow_server(delay, schedule, default)`` starts a SlowServer, stopped after the test."""
    started: list[SlowServer] = []

    def start(delay: float, schedule=None, default: str = "pass") -> SlowServer:
        server = SlowServer(delay, schedule, default).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def requests_for(count: int, tag: str = "q") -> list[ChatRequest]:
    return [ChatRequest.from_messages([{"role": "user", "content": f"{tag}{i}"}], Sampling(max_tokens=4))
            for i in range(count)]


def stats_of(limits: SharedLimits) -> dict:
    return asyncio.run(limits.stats())  # reads counters only: safe while no call uses the limits


# ----- the budget itself, in one process -----

def test_shared_limits_cap_concurrency_and_take_back_unused_tokens():
    async def scenario():
        limits = SharedLimits(2, tpm=600)  # 10 tokens a second, bucket of 10
        holding = peak = 0

        async def hold():
            nonlocal holding, peak
            lease = await limits.acquire(1)
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(0.05)
            holding -= 1
            await limits.release(lease, 1)  # nothing used: the bucket stays full

        await asyncio.gather(*(hold() for _ in range(6)))
        lease = await limits.acquire(10)  # the whole bucket
        await limits.release(lease, 10)
        started = time.monotonic()
        lease = await limits.acquire(10)  # at once: the 10 came back
        waited = time.monotonic() - started
        await limits.release(lease, 0)
        return peak, waited, await limits.stats()

    peak, waited, stats = asyncio.run(scenario())
    assert peak == 2 and stats["peak_in_flight"] == 2
    assert waited < 0.05
    assert (stats["acquired"], stats["released"], stats["in_flight"], stats["expired"]) == (8, 8, 0, 0)
    assert stats["tokens_reserved"] == 26 and stats["tokens_returned"] == 16


def test_an_expired_lease_is_taken_back_and_its_late_release_ignored():
    async def scenario():
        limits = SharedLimits(1, lease_seconds=0.3)
        abandoned = await limits.acquire(0)  # its holder "dies"
        started = time.monotonic()
        lease = await limits.acquire(0)
        waited = time.monotonic() - started
        await limits.release(abandoned, 0)  # too late: must not free the live lease
        in_flight = (await limits.stats())["in_flight"]
        await limits.release(lease, 0)
        return waited, in_flight, await limits.stats()

    waited, in_flight, stats = asyncio.run(scenario())
    assert 0.25 <= waited < 1.0
    assert in_flight == 1
    assert (stats["expired"], stats["released"], stats["in_flight"]) == (1, 1, 0)


def test_a_cancelled_waiter_takes_no_slot():
    async def scenario():
        limits = SharedLimits(1)
        first = await limits.acquire(0)
        waiter = asyncio.ensure_future(limits.acquire(0))
        await asyncio.sleep(0.05)
        waiter.cancel()
        await limits.release(first, 0)
        second = await asyncio.wait_for(limits.acquire(0), 1.0)
        await limits.release(second, 0)
        return waiter.cancelled(), await limits.stats()

    cancelled, stats = asyncio.run(scenario())
    assert cancelled
    assert (stats["acquired"], stats["in_flight"]) == (2, 0)


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="max_concurrency"):
        SharedLimits(0)
    with pytest.raises(ValueError, match="lease_seconds"):
        SharedLimits(1, lease_seconds=0)


# ----- the OpenAI backend with a shared budget, in one process -----

def test_backend_holds_a_lease_per_attempt_and_releases_every_one(slow_server):
    server = slow_server(0.1, {1: "500"})  # one retry: two attempts, two leases
    limits = SharedLimits(2)
    with OpenAIBackend("m", base_url=server.url, max_concurrency=8, backoff_base=0.05,
                       shared_budget=limits) as backend:
        responses = backend.generate(requests_for(8))
    assert all(r.ok for r in responses)
    assert server.peak == 2  # the local limit of 8 is not what bounds it
    stats = stats_of(limits)
    assert (stats["acquired"], stats["released"], stats["in_flight"], stats["peak_in_flight"]) == (9, 9, 0, 2)


def test_a_tripped_breaker_leaves_no_lease_behind(slow_server):
    server = slow_server(0.02, default="429:0.05")
    limits = SharedLimits(2)
    with OpenAIBackend("m", base_url=server.url, max_concurrency=4, max_retries=10_000, backoff_base=0.05,
                       breaker_failures=6, breaker_seconds=0.3, shared_budget=limits) as backend:
        with pytest.raises(BackendUnavailable):
            backend.generate(requests_for(12))
    stats = stats_of(limits)
    assert stats["acquired"] >= 6 and stats["in_flight"] == 0 and stats["released"] == stats["acquired"]


def test_factory_for_the_embedded_backend_is_plain_make_backend():
    config = load_config(None, {"llm": {"backend": "embedded"}})
    factory = cluster_backend_factory(config)  # needs no Ray: no budget actor is made
    assert factory.func is make_backend and factory.args == (config,) and not factory.keywords


# ----- Ray workers sharing one budget actor -----

class Worker:
    """A Ray actor with one backend, as a shard worker has."""

    def __init__(self, factory):
        self.backend = factory()

    def generate(self, count: int, tag: str) -> int:
        """Answers ``count`` requests; returns how many succeeded."""
        return sum(r.ok for r in self.backend.generate(requests_for(count, tag)))

    def describe(self) -> tuple:
        return self.backend.max_concurrency, self.backend.rpm, type(self.backend.shared_budget).__name__

    def close(self) -> None:
        self.backend.close()


def local_backend_with_budget(base_url: str, max_concurrency: int, name: str, **options) -> OpenAIBackend:
    """An OpenAI backend whose local limit differs from the cluster's (built in the worker)."""
    import ray

    return OpenAIBackend("m", base_url=base_url, max_concurrency=max_concurrency,
                         shared_budget=RayBudget(ray.get_actor(name)), **options)


def wait_for_no_leases(ray, budget, seconds: float = 10.0) -> dict:
    """The budget's stats once no lease is out (releases are sent without waiting), or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (stats := ray.get(budget.stats.remote()))["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return stats


@pytest.fixture
def start_workers(ray_cluster, slow_server):
    """Factory: ``start_workers(factory)`` starts two :class:`Worker` actors, closed before the server stops."""
    ray = ray_cluster
    started: list = []

    def start(factory) -> list:
        workers = [ray.remote(Worker).options(num_cpus=0).remote(factory) for _ in range(2)]
        started.extend(workers)
        ray.get([worker.describe.remote() for worker in workers])  # built before the clock starts
        return workers

    yield start
    ray.get([worker.close.remote() for worker in started])
    for worker in started:
        ray.kill(worker)


@pytest.mark.ray
def test_two_workers_share_the_cluster_concurrency_limit(ray_cluster, slow_server, start_workers):
    ray = ray_cluster
    server = slow_server(0.2)
    budget = cluster_budget("budget-concurrency", 3)
    workers = start_workers(functools.partial(local_backend_with_budget, server.url, 4, "budget-concurrency"))
    assert ray.get([worker.generate.remote(8, tag) for worker, tag in zip(workers, "ab")]) == [8, 8]
    # Each worker alone may have 4 in flight (8 together); the cluster allows 3.
    assert 2 <= server.peak <= 3
    stats = wait_for_no_leases(ray, budget)
    assert stats["acquired"] == stats["released"] == 16 and stats["peak_in_flight"] <= 3 and stats["in_flight"] == 0


@pytest.mark.ray
def test_requests_cancelled_while_waiting_for_the_cluster_leave_no_lease(ray_cluster, slow_server, start_workers):
    ray = ray_cluster
    server = slow_server(0.02, default="429:0.05")
    budget = cluster_budget("budget-breaker", 2)
    # Locally 4 may go, so when the breaker opens some requests are waiting for a cluster lease.
    [worker, _] = start_workers(functools.partial(local_backend_with_budget, server.url, 4, "budget-breaker",
                                                  max_retries=10_000, backoff_base=0.05, breaker_failures=6,
                                                  breaker_seconds=0.3))
    with pytest.raises(ray.exceptions.RayTaskError, match="BackendUnavailable"):
        ray.get(worker.generate.remote(12, "q"))
    stats = wait_for_no_leases(ray, budget)
    assert stats["acquired"] >= 6 and stats["in_flight"] == 0 and stats["released"] == stats["acquired"]


@pytest.mark.ray
def test_two_workers_share_the_cluster_rpm_through_the_factory(ray_cluster, slow_server, start_workers):
    ray = ray_cluster
    server = slow_server(0.0)
    config = load_config(None, {"llm": {"backend": "openai", "model": "m", "base_url": server.url,
                                        "max_concurrency": 8, "rpm": 120}})  # 2 a second, bucket of 2
    factory = cluster_backend_factory(config, "budget-rpm")
    assert factory.func is _budgeted_backend
    factory = pickle.loads(pickle.dumps(factory))  # travels to the workers by plain pickle too
    workers = start_workers(factory)
    # Each worker keeps the full limits locally; the actor holds the cluster's.
    assert ray.get([worker.describe.remote() for worker in workers]) == [(8, 120, "RayBudget")] * 2
    assert ray.get([worker.generate.remote(5, tag) for worker, tag in zip(workers, "ab")]) == [5, 5]
    arrivals = sorted(r.arrived for r in server.requests)
    # 2 at once, then 8 more at 2 a second: 4 s. Each worker's own bucket would allow all 10 in 1.5 s.
    assert len(arrivals) == 10 and arrivals[-1] - arrivals[0] >= 3.5
    slower = config.model_copy(update={"llm": config.llm.model_copy(update={"rpm": 60})})
    with pytest.raises(ValueError, match="already exists"):
        cluster_backend_factory(slower, "budget-rpm")
    # Unnamed: one budget per server, model and limits.
    default = cluster_backend_factory(config)
    assert default.args == cluster_backend_factory(config).args and default.args[1].startswith("synthllm-budget-")
    assert cluster_backend_factory(slower).args[1] != default.args[1]
