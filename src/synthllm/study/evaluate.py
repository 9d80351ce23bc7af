"""Evaluating one checkpoint: greedy accuracy, held-out loss, training loss, H(S | W).

- **Accuracy**: greedy answers (temperature 0) generated through synthllm's
  backend layer — the embedded transformers backend loading the checkpoint
  folder, or an OpenAI-compatible server that serves it (``eval.backend:
  openai``) — graded by :mod:`synthllm.study.grading`.
- **Held-out loss**: mean NLL per token of the benchmark's reference
  solutions given the chat-formatted question (bf16 autocast where the device
  computes bf16 natively, else fp32), scored with
  :func:`synthllm.analysis.entropy.conditional_nll` (the same scorer as the
  report's entropy proxies). It stays informative where accuracy is near zero:
  SmolLM2-135M answers almost no GSM8K problem, yet its loss on the reference
  solutions falls as it trains on GSM8K-like data.
- **Training loss**: the same NLL on the first samples of the unit's own
  subset; held-out loss minus training loss is the generalization gap.
- **H(S_gen | W), H(S_anchor | W)** (SPEC §3): the same NLL on fixed samples of
  the training set and of the anchor set.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["Scorer", "generate_answers"]


class Scorer:
    """NLL per token of answers given their prompts, under one checkpoint.

    Parameters
    ----------
    model_folder : Path
        A Hugging Face model folder.
    device : str
        ``"cpu"`` or ``"cuda"``.
    max_tokens, batch_size : int
        Truncation and batch size of :func:`conditional_nll`.
    """

    def __init__(self, model_folder: Path, device: str = "cpu", max_tokens: int = 512, batch_size: int = 16):
        from ..llm.embedded import load_reference_model

        from .train import bf16_supported

        self.lm, self.tokenizer = load_reference_model(str(model_folder), device)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = device
        self.bf16 = bf16_supported(device)

    def context(self, prompt: list[dict]) -> str:
        """The chat-formatted prompt up to the start of the assistant turn."""
        return self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)

    def nll(self, prompts: list[list[dict]], answers: list[str]) -> dict:
        """Token-weighted mean NLL (nats/token) of ``answers`` given ``prompts``: ``nats_per_token``, ``tokens``, ``n``."""
        from ..analysis.entropy import conditional_nll

        if not answers:
            return {"nats_per_token": None, "tokens": 0, "n": 0}
        import torch

        # bf16 autocast where the hardware has it (2.4x faster on an AVX512-BF16 CPU); log-softmax stays fp32
        with torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16):
            result = conditional_nll(self.lm, self.tokenizer, answers, [self.context(p) for p in prompts],
                                     max_tokens=self.max_tokens, batch_size=self.batch_size)
        return {"nats_per_token": result["nats_per_token"], "tokens": result["tokens"], "n": result["n_texts"]}

    def close(self) -> None:
        self.lm = None


def generate_answers(model_folder: Path, prompts: list[list[dict]], evaluation, device: str) -> list:
    """Greedy answers to ``prompts`` from the checkpoint, through synthllm's backend layer.

    With the embedded backend the requests (greedy, no grammar) take its
    row-dropping decoding loop: bf16 where the CPU has it, each answer leaving
    the batch at its end-of-sequence token. Measured on 50 GSM8K test items
    with SmolLM2-135M, cap 256, one thread (bench/results/study.md): 206
    tokens/CPU-s against 173 for ``model.generate`` (1.19x; 1.47x in wall time).

    Parameters
    ----------
    model_folder : Path
        The checkpoint (embedded backend: loaded; openai backend: the served model name).
    prompts : list of message lists
        One conversation per request.
    evaluation : EvalConfig
        Backend, URL, batch size, ``max_new_tokens``.
    device : str
        Device of the embedded backend.

    Returns
    -------
    list of ChatResponse
        One per prompt: ``text`` (None where the request failed), ``completion_tokens``,
        ``finish_reason`` (``"length"``: the answer hit ``max_new_tokens``).
    """
    from ..config import Config, LLMConfig
    from ..llm.base import ChatRequest, Sampling
    from ..llm.factory import make_backend

    if not prompts:
        return []
    llm = LLMConfig(backend=evaluation.backend, model=str(model_folder), batch_size=evaluation.batch_size,
                    device=device, base_url=evaluation.base_url)
    backend = make_backend(Config(llm=llm))
    sampling = Sampling(max_tokens=evaluation.max_new_tokens, temperature=0.0, top_p=1.0, seed=0)
    try:
        requests = [ChatRequest.from_messages(p, sampling) for p in prompts]
        replies = []
        step = max(1, backend.preferred_batch_size)
        for start in range(0, len(requests), step):
            replies += backend.generate(requests[start:start + step])
        return replies
    finally:
        backend.close()
