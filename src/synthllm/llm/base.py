"""The one interface every model backend implements.

A stage builds :class:`ChatRequest` objects and parses :class:`ChatResponse`
texts; it never knows which backend answered. A backend takes a batch of
requests and returns one response per request, in order. Caching, retries of
whole stages and sharding live outside the backend (see ``llm/cache.py`` and
``executors/``), so a new backend is one small file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters sent with a request; part of the cache key."""

    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    #: generation ends at the first of these strings, which is not part of the reply (OpenAI ``stop``)
    stop: tuple[str, ...] = ()
    #: OpenAI's penalties on tokens already in the *reply* (not the prompt): a logit drops by
    #: ``presence_penalty`` once a token has appeared and by ``frequency_penalty`` per appearance
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def as_dict(self) -> dict:
        data = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }
        if self.stop:  # only when set, so that keys of requests without stops stay as they were
            data["stop"] = list(self.stop)
        for name in ("presence_penalty", "frequency_penalty"):  # likewise
            if getattr(self, name):
                data[name] = getattr(self, name)
        return data


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completion request.

    ``messages`` is a list of ``{"role", "content"}`` dicts (OpenAI chat
    format). ``sample_index`` distinguishes repeated samples of the same prompt
    (self-consistency) so that they get different cache keys and seeds.
    ``prefill`` is how the reply must begin (e.g. ``"<level>"``): a backend
    that can continue a started assistant turn (the embedded one) starts the
    reply with it and returns it as part of the text; others ignore it, so
    parsers must accept replies with or without it.
    ``grammar`` is the EBNF (xgrammar / GBNF) the whole reply must match, or
    None: backends that can constrain decoding enforce it (the embedded one
    with xgrammar, servers through their own request field); a backend that
    enforces it starts the reply at the grammar's root and ignores
    ``prefill``. Others send the request unconstrained.
    """

    messages: tuple[tuple[str, str], ...]
    sampling: Sampling = field(default_factory=Sampling)
    sample_index: int = 0
    prefill: str = ""
    grammar: str | None = None

    @classmethod
    def from_messages(cls, messages: Sequence[dict], sampling: Sampling, sample_index: int = 0,
                      prefill: str = "", grammar: str | None = None) -> "ChatRequest":
        return cls(tuple((m["role"], m["content"]) for m in messages), sampling, sample_index, prefill, grammar)

    def message_dicts(self) -> list[dict]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def cache_key(self, model: str) -> str:
        """Hash of (model, sampling parameters, messages, sample index, prefill, grammar).

        The messages are hashed piece by piece, each prefixed with its length
        (so no two different conversations hash the same input), instead of
        being serialised first: prompts are long and this runs per request.
        The grammar enters the key only when set, so keys of unconstrained
        requests stay what they were. A constrained request and the same one
        unconstrained have different keys even when a server ignored the
        grammar: the cache never mixes the two kinds of reply.
        """
        head = [model, self.sampling.as_dict(), self.sample_index, self.prefill]
        if self.grammar is not None:
            head.append(hashlib.sha256(self.grammar.encode("utf-8")).hexdigest())
        digest = hashlib.sha256(json.dumps(head, separators=(",", ":")).encode())
        for role, content in self.messages:
            for part in (role.encode(), content.encode("utf-8")):
                digest.update(len(part).to_bytes(8, "little"))
                digest.update(part)
        return digest.hexdigest()


@dataclass
class ChatResponse:
    """A backend's answer to one request.

    ``text`` is None when the request failed; ``error`` then says why (never
    containing credentials). ``finish_reason`` is ``"stop"``, ``"length"`` or
    ``"error"``. ``cached`` is set by the cache layer, not by backends.
    ``retryable`` marks a failure worth trying again on a later run.
    """

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    error: str | None = None
    cached: bool = False
    #: a failure that may go away (429, 5xx, timeout, connection): the record stays pending and a
    #: later run retries it; ``False`` for a permanent one (prompt too long, content filter, 400)
    retryable: bool = False

    @property
    def ok(self) -> bool:
        return self.text is not None and self.error is None


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (excluded), and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


@runtime_checkable
class Backend(Protocol):
    """What every backend provides.

    ``model_name`` identifies the model in cache keys and in the dataset.
    ``generate`` answers a batch; a failed request gets a response with
    ``error`` set rather than raising, so one bad request never kills a batch.
    ``preferred_batch_size`` tells the executor how many requests to hand over
    at once (an embedded model batches on the device; a server backend keeps
    that many requests in flight).
    """

    model_name: str
    preferred_batch_size: int

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]: ...

    def close(self) -> None: ...
