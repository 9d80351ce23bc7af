"""The backend a config asks for, built in one place.

Lives with the backends (not above the executors) so that executors, Ray
workers and the study can all build one without importing the pipeline.
Every executor receives a *factory* (this function partially applied to a
config), never a live backend: a factory pickles to Ray workers, a loaded
model does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import Backend

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config


def make_backend(config: "Config", shared_budget=None, state_dir: Path | None = None) -> Backend:
    """The backend ``config.llm`` asks for.

    Parameters
    ----------
    config : the run configuration.
    shared_budget : limits shared between backends, for an OpenAI or vLLM backend (see ``OpenAIBackend``).
    state_dir : a folder this backend may own (e.g. the run folder's ``llm``): batch jobs' state
        (``llm.mode: batch``, required there) and the managed vLLM server's log (``vllm-server.log``).

    Returns
    -------
    Backend : with ``llm.mode: batch`` a :class:`~synthllm.llm.batch.BatchBackend` (``batch_mode = True``).
    """
    llm = config.llm
    if llm.mode == "batch":
        return _batch_backend(config, state_dir)
    if llm.backend == "embedded":
        from .embedded import TransformersBackend

        return TransformersBackend(llm.model, batch_size=llm.batch_size, device=llm.device, threads=llm.threads,
                                   repetition_penalty=llm.repetition_penalty, dtype=llm.dtype,
                                   constrained=llm.constrained != "off")
    if llm.backend == "vllm":
        from .vllm_server import VLLMBackend

        return VLLMBackend(llm.model, python=llm.vllm_python, server_args=llm.vllm_args,
                           startup_timeout=llm.vllm_startup_timeout, kv_cache_gb=llm.vllm_kv_cache_gb,
                           log_path=Path(state_dir) / "vllm-server.log" if state_dir else None,
                           **_openai_options(llm), shared_budget=shared_budget)
    from .openai_backend import OpenAIBackend

    return OpenAIBackend(model=llm.model, base_url=llm.base_url, api_key_env=llm.api_key_env,
                         **_openai_options(llm), shared_budget=shared_budget)


def _openai_options(llm) -> dict:
    """What the OpenAI-compatible client takes from ``llm`` besides the model, URL and key."""
    return dict(max_concurrency=llm.max_concurrency, rpm=llm.rpm, tpm=llm.tpm, timeout=llm.timeout,
                max_retries=llm.max_retries, context_window=llm.context_window, prices=llm.prices,
                breaker_failures=llm.breaker_failures, breaker_seconds=llm.breaker_seconds,
                constrained=llm.constrained)


def _batch_backend(config: "Config", state_dir: Path | None) -> Backend:
    from ..errors import ConfigError
    from .batch import BatchBackend, OpenAIBatchSubmitter, VLLMRunBatchSubmitter
    from .openai_backend import OpenAIBackend

    llm = config.llm
    if state_dir is None:
        raise ConfigError("llm.mode: batch needs a folder for the batch state (the run folder); none was given")
    if llm.backend == "embedded":
        raise ConfigError("llm.mode: batch works with llm.backend 'openai' or 'vllm', not 'embedded'")
    submitter_name = llm.batch_submitter
    if submitter_name == "auto":
        submitter_name = "vllm" if llm.backend == "vllm" else "openai"
    if submitter_name == "vllm":
        from .vllm_server import vllm_model_folder

        submitter = VLLMRunBatchSubmitter(vllm_model_folder(llm.model), served_name=llm.model,
                                          python=llm.vllm_python, args=llm.vllm_args, kv_cache_gb=llm.vllm_kv_cache_gb,
                                          poll_interval=llm.batch_poll_interval or 2.0)
        # never contacted: it only builds request bodies and reads replies the way a live run does
        base_url = llm.base_url or "http://127.0.0.1:1/v1"
    else:
        submitter = OpenAIBatchSubmitter(llm.base_url, llm.api_key_env, completion_window=llm.batch_completion_window,
                                         poll_interval=llm.batch_poll_interval or 30.0, timeout=llm.timeout)
        base_url = llm.base_url
    live = OpenAIBackend(model=llm.model, base_url=base_url, api_key_env=llm.api_key_env, **_openai_options(llm))
    return BatchBackend(live, submitter, state_dir, discount=llm.batch_discount, max_requests=llm.batch_max_requests,
                        max_bytes=llm.batch_max_bytes, max_rounds=llm.batch_max_rounds)


class given_backend:  # noqa: N801  (used like a function: given_backend(backend) is a factory)
    """A factory that hands out a backend the caller built (tests, notebooks): the local executor only,
    since a live backend does not pickle to Ray workers."""

    def __init__(self, backend: Backend):
        self.backend = backend

    def __call__(self) -> Backend:
        return self.backend
