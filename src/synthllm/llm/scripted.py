"""A scripted in-process backend: answers come from a Python function.

For unit tests and dry runs: it implements the same :class:`Backend`
interface as the real backends, so stages, caching and executors run their
real code paths; only the text comes from ``responder(messages)`` instead of
a model. Token counts are whitespace word counts.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .base import ChatRequest, ChatResponse, cut_at_stop

Responder = Callable[[list[dict]], str]


class ScriptedBackend:
    """Backend whose reply to each request is ``responder(messages)``.

    Parameters
    ----------
    responder : function from chat messages to reply text; raising an
        exception turns into a failed response carrying its message.
    model_name : the name written into cache keys and records.
    batch_size : how many requests the executor hands over at once.
    """

    def __init__(self, responder: Responder, model_name: str = "scripted", batch_size: int = 16):
        self.responder = responder
        self.model_name = model_name
        self.preferred_batch_size = batch_size
        self.calls = 0

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        responses = []
        for request in requests:
            self.calls += 1
            messages = request.message_dicts()
            prompt_tokens = sum(len(m["content"].split()) for m in messages)
            try:
                text = self.responder(messages)
            except Exception as exc:  # a scripted failure, reported like a server error
                responses.append(ChatResponse(None, prompt_tokens, 0, "error", f"{type(exc).__name__}: {exc}"))
                continue
            text, _ = cut_at_stop(text, request.sampling.stop)
            responses.append(ChatResponse(text, prompt_tokens, len(text.split())))
        return responses

    def close(self) -> None:
        pass
