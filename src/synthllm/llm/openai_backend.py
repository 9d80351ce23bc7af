"""A backend for any OpenAI-compatible chat-completions server.

vLLM, SGLang, llama.cpp's ``llama-server``, TGI, Ollama and OpenAI itself all
speak ``POST /v1/chat/completions``. :class:`OpenAIBackend` drives one of them
with the official ``openai`` async client, many requests in flight, on a
dedicated event-loop thread, so ``generate`` is an ordinary blocking call
whether or not the caller's thread runs an event loop.

What happens to each request:

1. *Context check.* With ``context_window`` set, a prompt whose estimated
   length plus ``max_tokens`` exceeds the window is not sent: it gets a failed
   response saying so. The estimate is ``ceil(chars / 3) + 4`` tokens per
   message ``+ 3``; English BPE averages about 4 characters a token, so this
   errs on the long side. Pass ``token_counter`` for an exact count.
2. *Rate limits.* ``rpm`` and ``tpm`` are token buckets refilled continuously
   (``limit / 60`` per second) holding at most one second's worth (at least
   one request). A request takes one request token and ``estimate +
   max_tokens`` tokens; the unused part is given back when the server reports
   its usage. A request larger than the bucket waits for a full bucket and
   leaves it in debt, so the long-run rate is the limit.
3. *Concurrency.* At most ``max_concurrency`` requests are in flight. The limit
   adapts (AIMD): each 429/503 halves it (once per round of requests), each
   success adds ``1 / limit``, up to ``max_concurrency``. With a
   ``shared_budget`` (e.g. one per Ray cluster, see
   :mod:`synthllm.executors.ray_budget`) each attempt also holds one of the
   budget's slots and takes from its rpm/tpm buckets, so several backends
   together keep one set of limits.
4. *Retries.* 429, 408, 409, 5xx, timeouts, connection errors and unreadable
   bodies (non-JSON, truncated, not a chat completion) are retried up to
   ``max_retries`` times with exponential backoff and jitter
   (``backoff_base * 2**attempt``, uniformly between half and all of it,
   capped at ``max_backoff``); a ``Retry-After``/``retry-after-ms`` header
   replaces the computed wait (plus up to 10 % jitter, also capped). Other
   4xx answers fail at once. After the last retry the request gets a failed
   response with the reason.
5. *Circuit breaker.* When ``breaker_failures`` consecutive attempts failed
   with retryable errors and the streak of failures has lasted
   ``breaker_seconds`` (with no success in between), counted across calls and
   shards for the backend's whole life (one run), the breaker opens: requests
   in flight are cancelled, no new one is sent, and every call raises
   :class:`BackendUnavailable`; the run stops with its work kept and exits
   with status 3, and the same command resumes once the server is back. A
   401/403/404 answer (bad key, no such model or endpoint) opens it at once:
   every other request would fail too. (Before, the window restarted with every
   call, one per shard, so a dead server was never detected when a shard's
   retries ended sooner: the run "succeeded" with every record failed.)
6. *Failure kinds.* A request that still fails after its retries for a
   retryable reason comes back with ``retryable=True``: the executor leaves
   its shard uncommitted and the next run tries again. A prompt over the
   context window, a 400 or a content filter is final (``retryable=False``).

6. *Grammar.* A request with a ``grammar`` carries it in the field of the
   server's dialect (:func:`grammar_fields`): vLLM ``structured_outputs``,
   SGLang ``ebnf``, llama.cpp ``grammar``. When the server rejects that field
   (HTTP 400/422 naming it), the backend remembers it for the rest of its
   life, logs one warning, and sends that request and all later ones
   unconstrained; the stages' tolerant parsers then read the replies.

The API key is read from the environment variable ``api_key_env``; it is
scrubbed from every error text and log line and never stored on the backend
object itself (only inside the HTTP client). ``usage`` keeps running totals
of tokens, requests, retries and (with ``prices``) cost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import logging
import math
import os
import random
import re
import threading
import time
from collections import deque
from typing import Callable, Hashable, Protocol, Sequence

from ..errors import InputError
from .base import ChatRequest, ChatResponse, cut_at_stop

logger = logging.getLogger("synthllm.llm.openai")

#: statuses worth retrying: request timeout, conflict/lock, rate limit, server-side errors
_RETRYABLE_STATUS = {408, 409, 429}
#: statuses that mean every request will fail (bad key, no access, wrong model or URL)
_FATAL_STATUS = {401, 403, 404}
#: statuses that mean the server is overloaded: the concurrency limit is cut
_OVERLOAD_STATUS = {429, 503}


from ..errors import BackendUnavailable  # noqa: E402  (re-exported)

#: constrained-decoding dialects: the request field each server reads a grammar from
GRAMMAR_DIALECTS = {
    "vllm": "structured_outputs",  # vLLM >= 0.10.2: {"structured_outputs": {"grammar": ...}}
    "sglang": "ebnf",
    "llamacpp": "grammar",
}


def grammar_fields(grammar: str, dialect: str) -> dict:
    """The extra request fields that ask a server of ``dialect`` to decode under ``grammar``.

    Parameters
    ----------
    grammar : EBNF text (xgrammar / GBNF syntax).
    dialect : ``"auto"`` (= ``"vllm"``), ``"vllm"``, ``"sglang"`` or ``"llamacpp"``.

    Returns
    -------
    dict : fields to merge into the request body (the OpenAI client's ``extra_body``).
    """
    dialect = "vllm" if dialect == "auto" else dialect
    if dialect == "vllm":
        return {"structured_outputs": {"grammar": grammar}}
    if dialect in GRAMMAR_DIALECTS:
        return {GRAMMAR_DIALECTS[dialect]: grammar}
    raise ValueError(f"unknown constrained-decoding dialect {dialect!r}; "
                     f"expected auto, off or one of {sorted(GRAMMAR_DIALECTS)}")


def _rejects_grammar(status: int, message: str, dialect: str) -> bool:
    """Whether an error answer says the server does not accept the dialect's grammar field."""
    field = GRAMMAR_DIALECTS["vllm" if dialect == "auto" else dialect]
    return status in (400, 422) and field in message


def estimate_prompt_tokens(messages: Sequence[dict]) -> int:
    """Upper-side estimate of a chat prompt's token count without a tokenizer.

    Parameters
    ----------
    messages : ``{"role", "content"}`` dicts.

    Returns
    -------
    int : ``ceil(chars / 3)`` plus 4 tokens of chat-template overhead per
        message plus 3 for the assistant prefix.
    """
    chars = sum(len(m["content"]) for m in messages)
    return math.ceil(chars / 3) + 4 * len(messages) + 3


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date); None if absent."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _TokenBucket:
    """Continuously refilled bucket of ``per_minute / 60`` tokens a second, one second deep.

    ``take(n)`` waits until the bucket holds ``min(n, capacity)`` and then
    removes ``n`` (possibly leaving a debt), so requests larger than the bucket
    still pass and the long-run rate stays at the limit.
    """

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()  # first come, first served

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, amount: float) -> None:
        async with self._lock:
            need = min(amount, self.capacity)
            self._refill()
            while self.level < need:
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def give_back(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class _AdaptiveLimit:
    """A concurrency gate: halved on overload, doubled after each full round of successes.

    A 429/503 burst halves the limit (once per round of requests). Once the
    burst is over, every ``limit`` successes in a row with no overload double
    it again (up to ``max_concurrency``), so it recovers in a few round trips
    instead of creeping back by ``1/limit`` per success (AIMD): with 30 % 429s
    the old gate sat at 1 and a 7.6 s run took 79 s (issue #13).
    """

    def __init__(self, ceiling: int):
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.in_flight = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._last_cut = -math.inf
        self._streak = 0  # successes since the last overload

    async def acquire(self) -> None:
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future  # the releaser counted us in already
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # woken and cancelled at once: hand the slot on
            else:
                self._waiters.remove(future)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            future = self._waiters.popleft()
            if not future.done():
                self.in_flight += 1
                future.set_result(None)

    def on_success(self) -> None:
        self._streak += 1
        if self.limit < self.ceiling:
            if self._streak >= self.limit:  # a whole round went through: the burst is over
                self.limit, self._streak = min(self.ceiling, self.limit * 2), 0
            else:
                self.limit = min(self.ceiling, self.limit + 1.0 / self.limit)
            self._wake()

    def on_overload(self, attempt_started: float) -> None:
        # Requests sent before the last cut report the old overload: cut (and restart the streak) once per round.
        if attempt_started > self._last_cut:
            self._streak = 0
            self.limit = max(1.0, self.limit / 2)
            self._last_cut = time.monotonic()
            logger.info("server overloaded: concurrency limit cut to %d", int(self.limit))


class SharedBudget(Protocol):
    """Concurrency and rate limits shared with other backends (other processes, other machines).

    Each attempt holds a lease from :meth:`acquire` until it has its answer
    (or fails) and then hands it back with :meth:`release`.
    """

    async def acquire(self, tokens: float) -> Hashable:
        """Wait for a free request slot, one request of the rpm budget and ``tokens`` of the tpm budget.

        Parameters
        ----------
        tokens : tokens reserved for the attempt (prompt estimate plus ``max_tokens``).

        Returns
        -------
        The lease to hand to :meth:`release`.
        """

    async def release(self, lease: Hashable, unused_tokens: float) -> None:
        """Free the lease's slot and give back ``unused_tokens``; must not wait (it also runs in cancelled tasks)."""


class _Retryable(Exception):
    """An attempt failed in a way worth retrying; ``wait`` is the server's Retry-After if any."""

    def __init__(self, reason: str, wait: float | None = None, overload: bool = False):
        super().__init__(reason)
        self.reason, self.wait, self.overload = reason, wait, overload


class _Final(Exception):
    """An attempt failed in a way retrying cannot fix; the request fails with ``reason``."""

    def __init__(self, reason: str, prompt_tokens: int = 0, status: int = 0):
        super().__init__(reason)
        self.reason, self.prompt_tokens, self.status = reason, prompt_tokens, status


class _LoopThread:
    """An event loop running forever in a daemon thread; ``run`` submits a coroutine and waits."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coroutine):
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: stop the requests too
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible server.

    Parameters
    ----------
    model : model name sent in each request (and used in cache keys).
    base_url : server URL ending in ``/v1`` (e.g. ``http://localhost:8000/v1``);
        None means OpenAI's API.
    api_key_env : environment variable holding the API key. When it is unset,
        local servers get the placeholder ``"EMPTY"``; OpenAI's API needs it.
    max_concurrency : most requests in flight (the adaptive limit's ceiling).
    rpm, tpm : requests and tokens per minute; None for no limit.
    timeout : seconds before an attempt is abandoned (and retried).
    max_retries : retries after the first attempt for retryable failures.
    context_window : the model's context length in tokens; when set, prompts
        that cannot fit with ``max_tokens`` are rejected before sending.
    prices : ``{"prompt": $ per 1M tokens, "completion": $ per 1M tokens}``;
        adds ``cost`` to :attr:`usage`.
    batch_size : requests handed over per ``generate`` call by the executor
        (default ``4 * max_concurrency``, so the tail of a batch is short).
    token_counter : function from chat messages to prompt tokens, replacing
        :func:`estimate_prompt_tokens` for the context and ``tpm`` checks.
    extra_body : extra JSON fields for every request (e.g. vLLM's ``top_k``).
    backoff_base, max_backoff : retry wait of attempt k is between half and
        all of ``backoff_base * 2**k`` seconds, at most ``max_backoff``.
    breaker_failures, breaker_seconds : the circuit breaker's thresholds.
    shared_budget : limits shared with other backends (:class:`SharedBudget`),
        enforced on top of this backend's own; None for none. With one, each
        backend may keep the full ``max_concurrency``, ``rpm`` and ``tpm``: the
        budget caps their sum, and a busy backend can use what idle ones leave.
    constrained : how requests' grammars are sent: ``"auto"`` (vLLM's field; a
        server that rejects it falls back at once), ``"vllm"``, ``"sglang"``,
        ``"llamacpp"``, or ``"off"`` (never sent).
    """

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 max_concurrency: int = 64, rpm: int | None = None, tpm: int | None = None,
                 timeout: float = 120, max_retries: int = 8, context_window: int | None = None,
                 prices: dict | None = None, *, batch_size: int | None = None,
                 token_counter: Callable[[list[dict]], int] | None = None, extra_body: dict | None = None,
                 backoff_base: float = 0.5, max_backoff: float = 60.0,
                 breaker_failures: int = 20, breaker_seconds: float = 60.0,
                 shared_budget: SharedBudget | None = None, constrained: str = "auto"):
        if constrained != "off":
            grammar_fields("", constrained)  # an unknown dialect fails here, not on the first request
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if prices is not None and not set(prices) <= {"prompt", "completion"}:
            raise ValueError(f"prices takes the keys 'prompt' and 'completion' ($ per 1M tokens), got {sorted(prices)}")
        for name, value in (("rpm", rpm), ("tpm", tpm), ("context_window", context_window)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        api_key = os.environ.get(api_key_env)
        if not api_key:
            if base_url is None:
                raise InputError(f"llm.api_key_env: OpenAI's API needs a key: set the environment variable "
                                 f"{api_key_env}")
            api_key = "EMPTY"  # vLLM, llama.cpp, Ollama... accept any key unless configured otherwise
        self.model_name = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.preferred_batch_size = batch_size or 4 * max_concurrency
        self.rpm, self.tpm = rpm, tpm
        self.timeout = timeout
        self.max_retries = max_retries
        self.context_window = context_window
        self.prices = dict(prices) if prices else None
        self.token_counter = token_counter or estimate_prompt_tokens
        self.extra_body = dict(extra_body) if extra_body else None
        self.backoff_base, self.max_backoff = backoff_base, max_backoff
        self.breaker_failures, self.breaker_seconds = breaker_failures, breaker_seconds
        self.shared_budget = shared_budget
        self.constrained = constrained
        #: set when the server rejected the grammar field: later requests go unconstrained
        self.grammar_rejected: str | None = None
        # The key only lives in the scrubber and the client; both are hidden from repr.
        self._scrub = _make_scrubber(api_key if api_key != "EMPTY" else "")
        self._totals = {"requests": 0, "failed": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._call_lock = threading.Lock()
        self._loop_thread = _LoopThread(name=f"openai-backend-{model}")
        self._loop_thread.run(self._setup(api_key))

    async def _setup(self, api_key: str) -> None:
        import openai

        # The client's own retries are off: this class retries, with its own limits and breaker.
        http_client = None
        if self.max_concurrency > 100:
            import httpx2

            # The client keeps 100 idle connections; beyond that each request would open a new one.
            limits = httpx2.Limits(max_connections=max(1000, self.max_concurrency),
                                   max_keepalive_connections=self.max_concurrency)
            http_client = openai.DefaultAsyncHttpxClient(limits=limits)
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=self.base_url, timeout=self.timeout,
                                          max_retries=0, http_client=http_client)
        self._gate = _AdaptiveLimit(self.max_concurrency)
        self._request_bucket = _TokenBucket(self.rpm) if self.rpm else None
        self._token_bucket = _TokenBucket(self.tpm) if self.tpm else None
        self._consecutive_failures = 0
        self._failing_since: float | None = None  # start of the current streak of retryable failures
        self._halted = None

    def __repr__(self) -> str:
        return (f"OpenAIBackend(model={self.model_name!r}, base_url={self.base_url!r}, "
                f"api_key_env={self.api_key_env!r}, max_concurrency={self.max_concurrency})")

    @property
    def usage(self) -> dict:
        """Running totals: requests, failed, retries, prompt_tokens, completion_tokens (and cost in $ with prices)."""
        totals = dict(self._totals)
        if self.prices:
            totals["cost"] = (totals["prompt_tokens"] * self.prices.get("prompt", 0.0)
                              + totals["completion_tokens"] * self.prices.get("completion", 0.0)) / 1e6
        return totals

    @property
    def concurrency_limit(self) -> int:
        """The adaptive concurrency limit now (``max_concurrency`` until the server pushes back)."""
        return int(self._gate.limit)

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        """Answer ``requests`` in order; failed requests get a response with ``error`` set.

        Parameters
        ----------
        requests : the batch.

        Returns
        -------
        list of ChatResponse, one per request.

        Raises
        ------
        BackendUnavailable : the circuit breaker opened or the server rejected the credentials.
        """
        if not requests:
            return []
        with self._call_lock:  # one batch at a time: the breaker state belongs to the call
            return self._loop_thread.run(self._generate_all(list(requests)))

    def submit(self, requests: Sequence[ChatRequest]) -> list[concurrent.futures.Future]:
        """Start answering ``requests`` and return at once: one future per request.

        What lets an executor keep ``max_concurrency`` requests in flight across
        shards (the next shard's requests flow while a slow one of an earlier
        shard is pending). A future raises :class:`BackendUnavailable` once the
        breaker is open; cancelling it cancels its request.
        """
        loop = self._loop_thread.loop
        return [asyncio.run_coroutine_threadsafe(self._answer(request), loop) for request in requests]

    async def _generate_all(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        tasks = [asyncio.ensure_future(self._answer(request)) for request in requests]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            # Early end (BackendUnavailable) or the caller gave up (Ctrl-C): nothing may keep sending.
            pending = [task for task in tasks if not task.done()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        failures = [task.exception() for task in tasks if task.done() and not task.cancelled()]
        if self._halted is not None:
            raise self._halted
        for failure in failures:
            if failure is not None:  # a bug, not a failed request: let it surface
                raise failure
        return [task.result() for task in tasks]

    def _payload(self, request: ChatRequest) -> dict:
        sampling = request.sampling
        payload = {
            "model": self.model_name,
            "messages": request.message_dicts(),
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            # distinct, reproducible seeds per sample; kept below 2**31 for servers with 32-bit seeds
            "seed": (sampling.seed * 1_000_003 + request.sample_index) % 2**31,
        }
        if sampling.stop:
            payload["stop"] = list(sampling.stop)
        for name in ("presence_penalty", "frequency_penalty"):  # standard OpenAI fields, sent when set
            if getattr(sampling, name):
                payload[name] = getattr(sampling, name)
        extra = dict(self.extra_body or {})
        if request.grammar is not None and self.constrained != "off" and self.grammar_rejected is None:
            extra.update(grammar_fields(request.grammar, self.constrained))
        if extra:
            payload["extra_body"] = extra
        return payload

    def describe(self) -> dict:
        """What generated the replies, for the manifest: backend, model, server, grammar dialect and whether it held."""
        return {"backend": "openai", "model": self.model_name, "base_url": self.base_url,
                "constrained": self.constrained != "off" and self.grammar_rejected is None,
                "dialect": self.constrained, "grammar_rejected": self.grammar_rejected}

    def _on_grammar_rejected(self, reason: str) -> None:
        """Remember, once per backend, that the server refuses the grammar field; warn once."""
        if self.grammar_rejected is None:
            self.grammar_rejected = reason
            logger.warning("%s rejected the %s grammar field (%s); sending requests unconstrained from now "
                           "on and reading replies with the tolerant parsers", self.base_url or "the server",
                           self.constrained, reason)

    async def _answer(self, request: ChatRequest) -> ChatResponse:
        if self._halted is not None:  # the breaker is open: nothing more is sent in this run
            raise self._halted
        messages = request.message_dicts()
        estimate = self.token_counter(messages)
        max_tokens = request.sampling.max_tokens
        if self.context_window is not None and estimate + max_tokens > self.context_window:
            return self._failed(f"prompt of ~{estimate} tokens (estimated) plus max_tokens {max_tokens} exceeds "
                                f"the context window of {self.context_window}; not sent", estimate)
        payload = self._payload(request)
        reason = "no attempt made"
        reserve = estimate + max_tokens  # tokens held for an attempt until the server reports its usage
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._totals["retries"] += 1
            if self._request_bucket is not None:
                await self._request_bucket.take(1)
            if self._token_bucket is not None:
                await self._token_bucket.take(reserve)
            # Local gate first: no cluster slot idles while this request waits for a local one, and
            # the shared budget never waits on a local gate, so no wait cycle (deadlock) can form.
            await self._gate.acquire()
            lease = None
            if self.shared_budget is not None:
                try:
                    lease = await self.shared_budget.acquire(reserve)
                except BaseException:
                    self._gate.release()
                    raise
            if self._halted is not None:  # another request opened the breaker while this one waited
                await self._release(lease, reserve)
                raise self._halted
            started = time.monotonic()
            try:
                response = await self._attempt(payload)
            except _Retryable as failure:
                await self._release(lease, reserve)  # nothing was generated
                failure.reason = reason = self._scrub(failure.reason)  # before it reaches any log line
                if self._token_bucket is not None:
                    self._token_bucket.give_back(reserve)
                self._on_retryable(failure, started)
                if attempt < self.max_retries:
                    await self._sleep_before_retry(self._wait(attempt, failure.wait), failure.reason)
                continue
            except _Final as failure:
                await self._release(lease, 0)
                if "extra_body" in payload and _rejects_grammar(failure.status, failure.reason, self.constrained) \
                        and request.grammar is not None:
                    self._on_grammar_rejected(failure.reason)
                    payload = self._payload(request)  # the same request, unconstrained; not a retry
                    continue
                return self._failed(failure.reason, failure.prompt_tokens)
            except BaseException:
                await self._release(lease, 0)
                raise
            unused = max(0, reserve - response.prompt_tokens - response.completion_tokens)
            await self._release(lease, unused)
            self._on_success()
            if self._token_bucket is not None:
                self._token_bucket.give_back(unused)
            self._totals["requests"] += 1
            self._totals["prompt_tokens"] += response.prompt_tokens
            self._totals["completion_tokens"] += response.completion_tokens
            if request.sampling.stop:  # servers that ignore `stop` still give the same reply text
                response.text, _ = cut_at_stop(response.text, request.sampling.stop)
            return response
        logger.info("request failed after %d attempts: %s", self.max_retries + 1, reason)  # counted as pending
        return self._failed(f"gave up after {self.max_retries + 1} attempts; last error: {reason}", 0, retryable=True)

    async def _release(self, lease: Hashable | None, unused_tokens: float) -> None:
        """End an attempt: free its local slot and, with a shared budget, its lease."""
        self._gate.release()
        if self.shared_budget is not None:
            await self.shared_budget.release(lease, unused_tokens)

    def _failed(self, reason: str, prompt_tokens: int, retryable: bool = False) -> ChatResponse:
        self._totals["requests"] += 1
        self._totals["failed"] += 1
        return ChatResponse(None, prompt_tokens=prompt_tokens, finish_reason="error", error=self._scrub(reason),
                            retryable=retryable)

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # up to 10 % later, so requests told the same instant do not all return at once
            return min(retry_after * random.uniform(1.0, 1.1), self.max_backoff)
        ceiling = min(self.max_backoff, self.backoff_base * 2 ** attempt)
        return random.uniform(ceiling / 2, ceiling)

    def _on_success(self) -> None:
        self._consecutive_failures = 0
        self._failing_since = None
        self._gate.on_success()

    def _on_retryable(self, failure: _Retryable, started: float) -> None:
        if failure.overload:
            self._gate.on_overload(started)
        self._consecutive_failures += 1
        if self._failing_since is None:
            self._failing_since = started  # the streak began when its first failed attempt was sent
        logger.info("retryable failure (%d in a row): %s", self._consecutive_failures, failure.reason)
        self._check_breaker(failure.reason)

    def _check_breaker(self, reason: str) -> None:
        """Open the breaker (raise) when the streak is long enough in attempts and in time."""
        if self._failing_since is None or self._consecutive_failures < self.breaker_failures:
            return
        silent_for = time.monotonic() - self._failing_since
        if silent_for >= self.breaker_seconds:
            raise self._halt(f"{self.base_url or 'OpenAI API'} failed {self._consecutive_failures} attempts in a "
                             f"row with no success for {silent_for:.0f} s (last error: {reason}); stopping the run")

    async def _sleep_before_retry(self, wait: float, reason: str) -> None:
        """The backoff wait, cut short at the moment the breaker's time runs out (checked then): a dead
        server stops the run about ``breaker_seconds`` after its first failure, not a whole backoff later."""
        if self._failing_since is not None:
            deadline = self._failing_since + self.breaker_seconds - time.monotonic()
            if 0 <= deadline < wait:
                await asyncio.sleep(deadline + 0.01)
                self._check_breaker(reason)
                wait -= deadline + 0.01
        await asyncio.sleep(max(0.0, wait))
        if self._halted is not None:
            raise self._halted

    def _halt(self, message: str) -> BackendUnavailable:
        """Remember that this call must stop, so queued requests are not sent; return the exception."""
        if self._halted is not None:  # already open: said once
            return self._halted
        self._halted = BackendUnavailable(self._scrub(message))
        logger.warning("%s", self._halted)
        return self._halted

    async def _attempt(self, payload: dict) -> ChatResponse:
        """One HTTP attempt; raises _Retryable, _Final or BackendUnavailable, else returns the response."""
        import openai

        try:
            completion = await self._client.chat.completions.create(**payload)
        except openai.APIStatusError as exc:
            status = exc.status_code
            # the client's message starts "Error code: 429 - "; the status is said once
            detail = re.sub(r"^Error code: \d+ - ", "", str(exc.message))
            message = self._scrub(f"HTTP {status}: {detail}")
            if status in _FATAL_STATUS:
                hint = f" (check ${self.api_key_env})" if status in (401, 403) else " (check base_url and model)"
                raise self._halt(f"{self.base_url or 'OpenAI API'} refused the request, {message}{hint}")
            if status in _RETRYABLE_STATUS or status >= 500:
                raise _Retryable(message, parse_retry_after(exc.response.headers), status in _OVERLOAD_STATUS)
            try:  # the client's message may omit the body, which names a rejected field
                body = self._scrub(exc.response.text[:500])
            except Exception:  # pragma: no cover - a body that cannot be read
                body = ""
            raise _Final(message if body in message else f"{message} ({body})", status=status)
        except openai.APITimeoutError:
            raise _Retryable(f"no answer within the {self.timeout:g} s timeout") from None
        except openai.APIConnectionError as exc:
            cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
            raise _Retryable(self._scrub(f"connection error{cause}")) from None
        except ValueError as exc:  # JSON decoding of a body that claims to be JSON
            raise _Retryable(f"unreadable response body ({type(exc).__name__}: {str(exc)[:200]})") from None
        return self._to_response(completion)

    def _to_response(self, completion) -> ChatResponse:
        choices = getattr(completion, "choices", None)
        if not choices:
            shown = completion if isinstance(completion, str) else type(completion).__name__
            raise _Retryable(f"response is not a chat completion: {str(shown)[:200]!r}")
        choice = choices[0]
        usage = getattr(completion, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None)
        finish = getattr(choice, "finish_reason", None) or "stop"
        if finish == "content_filter":
            raise _Final("the server's content filter blocked the reply", prompt_tokens)
        if not isinstance(text, str):
            raise _Final(f"chat completion without message text (finish_reason={finish!r})", prompt_tokens)
        return ChatResponse(text, prompt_tokens, completion_tokens, "length" if finish == "length" else "stop")

    def close(self) -> None:
        """Close the HTTP client and stop the event-loop thread."""
        if self._loop_thread is None:
            return
        self._loop_thread.run(self._client.close())
        self._loop_thread.close()
        self._loop_thread = None

    def __enter__(self) -> "OpenAIBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _make_scrubber(secret: str) -> Callable[[str], str]:
    """A function that replaces ``secret`` by ``***`` in a text (a no-op without a real key)."""
    if len(secret) < 4:  # an empty or toy key: replacing it would mangle ordinary words
        return lambda text: text

    def scrub(text: str) -> str:
        return text.replace(secret, "***")

    return scrub
