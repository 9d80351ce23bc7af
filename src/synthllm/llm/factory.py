"""The backend a config asks for, built in one place.

Lives with the backends (not above the executors) so that executors, Ray
workers and the study can all build one without importing the pipeline.
Every executor receives a *factory* (this function partially applied to a
config), never a live backend: a factory pickles to Ray workers, a loaded
model does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Backend

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config


def make_backend(config: "Config", shared_budget=None) -> Backend:
    """The backend ``config.llm`` asks for; ``shared_budget`` goes to an OpenAI backend (see ``OpenAIBackend``)."""
    llm = config.llm
    if llm.backend == "embedded":
        from .embedded import TransformersBackend

        return TransformersBackend(llm.model, batch_size=llm.batch_size, device=llm.device, threads=llm.threads,
                                   repetition_penalty=llm.repetition_penalty, dtype=llm.dtype,
                                   constrained=llm.constrained != "off")
    from .openai_backend import OpenAIBackend

    return OpenAIBackend(model=llm.model, base_url=llm.base_url, api_key_env=llm.api_key_env,
                         max_concurrency=llm.max_concurrency, rpm=llm.rpm, tpm=llm.tpm, timeout=llm.timeout,
                         max_retries=llm.max_retries, context_window=llm.context_window, prices=llm.prices,
                         shared_budget=shared_budget, constrained=llm.constrained)
