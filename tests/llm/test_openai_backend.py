"""The OpenAI-compatible backend against a real server, with faults from the proxy.

Tests marked ``server`` talk to ``transformers serve`` running the embedded
SmolLM2 model (tiny generations); faults the server cannot produce on demand
come from :class:`FaultProxy` in front of it. Tests about limits and the
breaker, where no request reaches a model, use the proxy's canned replies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest

from synthllm.llm.base import Backend, ChatRequest, Sampling
from synthllm.llm.openai_backend import BackendUnavailable, OpenAIBackend, estimate_prompt_tokens, parse_retry_after

KEY_ENV = "SYNTHLLM_TEST_OPENAI_KEY"
SECRET = "sk-test-0123456789abcdefSECRET"


def requests_for(*prompts: str, max_tokens: int = 4, **sampling) -> list[ChatRequest]:
    return [ChatRequest.from_messages([{"role": "user", "content": p}], Sampling(max_tokens=max_tokens, **sampling))
            for p in prompts]


@pytest.fixture
def backend_factory(monkeypatch):
    """Build backends with the test key in the environment; closed after the test."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    made: list[OpenAIBackend] = []

    def make(model: str, base_url: str, **options) -> OpenAIBackend:
        options.setdefault("backoff_base", 0.05)
        backend = OpenAIBackend(model, base_url=base_url, api_key_env=KEY_ENV, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def run_with_deadline(function, seconds: float):
    """Run ``function`` in a thread; fail the test if it has not returned within ``seconds`` (a hang)."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.server
def test_real_server_answers_with_usage_and_cost(openai_server, backend_factory):
    backend = backend_factory(openai_server.model, openai_server.base_url, max_concurrency=2,
                              prices={"prompt": 1.0, "completion": 2.0})
    responses = backend.generate(requests_for("Say hello.", "Name a colour.", max_tokens=4))
    assert [r.ok for r in responses] == [True, True]
    assert all(r.text for r in responses)
    assert all(0 < r.completion_tokens <= 4 and r.prompt_tokens > 0 for r in responses)
    assert {r.finish_reason for r in responses} <= {"stop", "length"}
    usage = backend.usage
    assert usage["requests"] == 2 and usage["failed"] == 0 and usage["retries"] == 0
    assert usage["prompt_tokens"] == sum(r.prompt_tokens for r in responses)
    assert usage["completion_tokens"] == sum(r.completion_tokens for r in responses)
    assert usage["cost"] == pytest.approx((usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6)


@pytest.mark.server
def test_retries_succeed_after_429_with_retry_after_and_5xx(openai_server, proxy_for, backend_factory):
    proxy = proxy_for(openai_server.root, {1: "429:0.6", 2: "500", 3: "503"})
    backend = backend_factory(openai_server.model, proxy.url, max_concurrency=1)
    [response] = backend.generate(requests_for("Say hello.", max_tokens=2))
    assert response.ok, response.error
    assert [r.fault for r in proxy.requests] == ["429", "500", "503", "pass"]
    assert backend.usage["retries"] == 3
    # Retry-After: 0.6 was honoured before the second attempt.
    assert proxy.requests[1].arrived - proxy.requests[0].arrived >= 0.6


@pytest.mark.server
def test_hang_hits_the_timeout_and_is_retried(openai_server, proxy_for, backend_factory):
    proxy = proxy_for(openai_server.root, {1: "hang"})
    backend = backend_factory(openai_server.model, proxy.url, timeout=6, max_retries=3)
    [response] = backend.generate(requests_for("Say hello.", max_tokens=2))
    assert response.ok, response.error
    assert proxy.requests[0].fault == "hang" and len(proxy.requests) >= 2
    assert backend.usage["retries"] >= 1


@pytest.mark.server
@pytest.mark.parametrize("fault, reason", [
    ("garbage", "unreadable response body"),
    ("html", "not a chat completion"),
    ("truncate", "RemoteProtocolError"),
])
def test_broken_bodies_fail_with_a_reason_after_retries(openai_server, proxy_for, backend_factory, fault, reason):
    proxy = proxy_for(openai_server.root, default=fault)
    backend = backend_factory(openai_server.model, proxy.url, max_retries=2)
    [response] = backend.generate(requests_for("Say hello.", max_tokens=2))
    assert not response.ok and response.finish_reason == "error"
    assert "gave up after 3 attempts" in response.error and reason in response.error
    assert len(proxy.requests) == 3
    assert backend.usage["failed"] == 1 and backend.usage["retries"] == 2


@pytest.mark.server
def test_a_rejected_request_does_not_sink_the_batch(openai_server, proxy_for, backend_factory):
    proxy = proxy_for(openai_server.root, {1: "400"})
    backend = backend_factory(openai_server.model, proxy.url, max_concurrency=1)
    responses = backend.generate(requests_for("Say hello.", "Say yes.", max_tokens=2))
    assert not responses[0].ok and "HTTP 400" in responses[0].error
    assert responses[1].ok, responses[1].error
    assert backend.usage["retries"] == 0  # a 400 is not retried


def test_always_429_trips_the_breaker_and_stops_sending(proxy_for, backend_factory):
    proxy = proxy_for(None, default="429:0.05")
    backend = backend_factory("m", proxy.url, max_concurrency=4, max_retries=10_000,
                              breaker_failures=8, breaker_seconds=1.0)
    with pytest.raises(BackendUnavailable, match="HTTP 429.*stopping the run"):
        run_with_deadline(lambda: backend.generate(requests_for(*[f"q{i}" for i in range(20)])), 60)
    seen = len(proxy.requests)
    assert seen >= 8
    # Cancelled requests are really gone: nothing more reaches the server.
    run_with_deadline(lambda: threading.Event().wait(0.5), 5)
    assert len(proxy.requests) == seen


def test_adaptive_concurrency_cuts_on_429_and_recovers_once_the_burst_is_over(proxy_for, backend_factory, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="synthllm.llm.openai")
    proxy = proxy_for(None, {1: "429", 2: "429"})
    backend = backend_factory("m", proxy.url, max_concurrency=64)
    assert all(r.ok for r in backend.generate(requests_for(*[f"q{i}" for i in range(200)])))
    assert "concurrency limit cut to 32" in caplog.text
    # before: +1/limit per success, so ~200 successes took the limit from 32 (or 16, when the second
    # 429 counts as a new round) to only ~38; now each whole round of successes doubles it back
    assert backend.concurrency_limit == 64


def test_unauthorised_stops_at_once_naming_the_variable_not_the_key(proxy_for, backend_factory):
    proxy = proxy_for(None, default="401")
    backend = backend_factory("m", proxy.url, max_concurrency=1)
    with pytest.raises(BackendUnavailable) as raised:
        backend.generate(requests_for("q1", "q2"))
    assert KEY_ENV in str(raised.value) and SECRET not in str(raised.value)
    assert len(proxy.requests) == 1


def test_api_key_never_leaks(proxy_for, backend_factory, caplog):
    proxy = proxy_for(None, {1: "leak_auth", 2: "500"}, default="429:0.01")
    backend = backend_factory("m", proxy.url, max_concurrency=1, max_retries=2,
                              breaker_failures=3, breaker_seconds=0)
    with caplog.at_level(logging.DEBUG):
        [leaked] = backend.generate(requests_for("q"))
        with pytest.raises(BackendUnavailable) as raised:
            backend.generate(requests_for("q2"))
    sent = proxy.requests[0].body
    assert b"q" in sent and SECRET.encode() not in sent  # the key travels in the header only
    assert "Bearer ***" in leaked.error
    texts = [leaked.error, str(raised.value), repr(backend), str(backend.usage), caplog.text]
    assert all(SECRET not in text for text in texts)


def test_sampling_is_mapped_onto_the_request(proxy_for, backend_factory):
    proxy = proxy_for(None)
    backend = backend_factory("m", proxy.url)
    assert isinstance(backend, Backend) and backend.preferred_batch_size == 4 * 64
    request = ChatRequest.from_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                                        Sampling(max_tokens=7, temperature=0.3, top_p=0.8, seed=5), sample_index=2)
    [response] = backend.generate([request])
    assert response.ok and response.text == "OK"
    body = json.loads(proxy.requests[0].body)
    assert body["model"] == "m"
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (7, 0.3, 0.8)
    assert body["seed"] == 5 * 1_000_003 + 2


def test_context_overflow_is_rejected_without_sending(proxy_for, backend_factory):
    proxy = proxy_for(None)
    backend = backend_factory("m", proxy.url, context_window=100)
    long_prompt = "word " * 60  # 300 characters: ~100 tokens by the estimate
    responses = backend.generate(requests_for(long_prompt, "short", max_tokens=16))
    assert not responses[0].ok and "exceeds the context window of 100" in responses[0].error
    assert responses[1].ok
    assert len(proxy.requests) == 1 and b"short" in proxy.requests[0].body
    assert backend.usage == {"requests": 2, "failed": 1, "retries": 0,
                             "prompt_tokens": responses[1].prompt_tokens, "completion_tokens": 1}


def test_rpm_limit_spaces_requests(proxy_for, backend_factory):
    proxy = proxy_for(None)
    backend = backend_factory("m", proxy.url, rpm=600)  # 10 a second, bucket of 10
    started = time.monotonic()
    assert all(r.ok for r in backend.generate(requests_for(*[f"q{i}" for i in range(30)])))
    arrivals = sorted(r.arrived for r in proxy.requests)
    # 10 may go at once, the other 20 wait for 2 s of refill (arrival is after release).
    assert arrivals[-1] - started >= 2.0
    # Without the limit all 30 would arrive within a second; with it a second sees about 20.
    assert max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals) <= 25


def test_tpm_limit_spaces_requests(proxy_for, backend_factory):
    proxy = proxy_for(None)
    backend = backend_factory("m", proxy.url, tpm=6000)  # 100 tokens a second, bucket of 100
    prompts = [f"{i:03d} " + "x" * 116 for i in range(6)]  # 120 chars: 40 + 7 estimated tokens, + 3 max_tokens
    assert estimate_prompt_tokens([{"role": "user", "content": prompts[0]}]) == 47
    started = time.monotonic()
    assert all(r.ok for r in backend.generate(requests_for(*prompts, max_tokens=3)))
    # Each request takes 50 tokens and gets 18 back once answered (canned usage: 31 + 1);
    # the sixth needs 50 in a bucket that started at 100: 100 + 100 t - 250 + 5 * 18 >= 50, t >= 1.1 s.
    assert max(r.arrived for r in proxy.requests) - started >= 1.1


def test_generate_works_inside_a_running_event_loop(proxy_for, backend_factory):
    proxy = proxy_for(None)
    backend = backend_factory("m", proxy.url)

    async def caller():
        return backend.generate(requests_for("q"))

    [response] = asyncio.run(caller())
    assert response.ok


def test_missing_key_for_openai_itself_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("SYNTHLLM_ABSENT_KEY", raising=False)
    with pytest.raises(ValueError, match="SYNTHLLM_ABSENT_KEY"):
        OpenAIBackend("gpt-4o-mini", api_key_env="SYNTHLLM_ABSENT_KEY")


def test_retry_after_header_forms():
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({}) is None


@pytest.mark.server
def test_a_server_that_rejects_the_grammar_field_gets_unconstrained_requests(openai_server, backend_factory,
                                                                             caplog):
    """transformers serve answers 422 'Unexpected fields' to vLLM's structured_outputs: warn once, fall back."""
    import dataclasses

    from synthllm.llm.base import Sampling
    from synthllm.stages.level1 import Level1Questions

    stage = Level1Questions(Sampling(max_tokens=24, temperature=0.0), max_questions=1, max_source_chars=300)
    requests = [r for text in ("Slopes of lines.", "Rounding numbers.")
                for r in stage.requests({"id": text, "text": text})]
    assert all(r.grammar for r in requests)
    backend = backend_factory(openai_server.model, openai_server.base_url, max_concurrency=1, constrained="vllm")
    assert backend.describe()["constrained"] is True
    with caplog.at_level("WARNING", logger="synthllm.llm.openai"):
        replies = backend.generate(requests)
        again = backend.generate([dataclasses.replace(requests[0], sample_index=1)])
    assert all(r.ok and r.text for r in replies + again), [(r.error, r.text) for r in replies + again]
    assert "structured_outputs" in backend.grammar_rejected
    assert backend.describe()["constrained"] is False
    rejected = [r for r in caplog.records if "rejected the vllm grammar field" in r.getMessage()]
    assert len(rejected) == 1  # said once for the run, not once per request
    assert backend.usage["failed"] == 0


def test_grammar_fields_per_dialect():
    from synthllm.llm.openai_backend import grammar_fields

    assert grammar_fields("g", "auto") == grammar_fields("g", "vllm") == {"structured_outputs": {"grammar": "g"}}
    assert grammar_fields("g", "sglang") == {"ebnf": "g"} and grammar_fields("g", "llamacpp") == {"grammar": "g"}
    with pytest.raises(ValueError, match="dialect"):
        grammar_fields("g", "tgi")
