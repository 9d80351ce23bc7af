"""The run configuration: one YAML file, validated by pydantic.

Every field has a default that works, so an empty file plus ``input.path`` is a
valid config. ``synthllm config-schema`` prints the fields with their
descriptions; the README lists them too. Unknown keys are errors (a typo must
not be silently ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Section(BaseModel):
    # allow_inf_nan=False: every float field of every section (thresholds,
    # weights, prices, temperatures) must be finite. YAML's ``.nan`` compares
    # false with everything, so ``filter.threshold: .nan`` dropped every
    # document and the run still exited 0.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class InputConfig(_Section):
    path: Path | None = Field(None, description="Corpus: a .jsonl / .jsonl.gz / .parquet file, or a folder of .txt/.md files.")
    format: Literal["auto", "jsonl", "parquet", "text"] = Field("auto", description="Input format; 'auto' decides from the path.")
    text_field: str = Field("text", description="Field holding the document text (JSONL/Parquet).")
    id_field: str | None = Field("id", description="Field holding the document id; when absent from a record, the id is a hash of the text.")
    limit: int | None = Field(None, ge=1, description="Use only the first N documents.")
    min_chars: int = Field(50, ge=0, description="Documents shorter than this are skipped and counted as 'too_short'.")


class LLMConfig(_Section):
    backend: Literal["embedded", "openai", "vllm"] = Field("embedded", description="'embedded': a local transformers model; 'openai': any OpenAI-compatible chat-completions server; 'vllm': a vLLM server that synthllm starts on loopback, uses and stops (pip install 'synthllm[vllm]', or bash scripts/setup_vllm.sh for its own virtualenv).")
    model: str = Field("smollm2-135m-instruct", description="Embedded and vLLM: 'smollm2-135m-instruct' (packaged), a model folder or a .gguf file (vLLM also takes a hub id). OpenAI: the served model name.")
    batch_size: int = Field(8, ge=1, description="Embedded: prompts generated together.")
    device: str = Field("cpu", description="Embedded: torch device ('cpu', 'cuda').")
    threads: int | None = Field(None, ge=1, description="Embedded: torch CPU threads (default: all cores).")
    repetition_penalty: float = Field(1.0, ge=1.0, description="Embedded: penalty on tokens already generated (1.0 = none; ~1.2 stops small models from looping).")
    dtype: Literal["auto", "bfloat16", "float32"] = Field("auto", description="Embedded: weights and arithmetic precision; 'auto' = bfloat16 where the CPU (avx512_bf16/amx) or GPU supports it natively, else float32 (bf16 generated 1.7-2.3x the tokens/s of fp32 on a 2-core Xeon).")
    constrained: Literal["auto", "off", "vllm", "sglang", "llamacpp"] = Field("auto", description="Constrained decoding: each stage's reply grammar is enforced while decoding. Embedded: with xgrammar unless 'off'. OpenAI backend: 'auto' and 'vllm' send vLLM's structured_outputs grammar, 'sglang' its ebnf field, 'llamacpp' its grammar field; a server that rejects the field is remembered for the run, warned about once, and sent unconstrained requests (the tolerant parsers read the replies). 'off': never.")
    base_url: str | None = Field(None, description="OpenAI: server URL, e.g. http://localhost:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="OpenAI: name of the environment variable holding the API key (the key itself never goes in the config).")
    max_concurrency: int = Field(64, ge=1, description="OpenAI: requests in flight at most.")
    rpm: int | None = Field(None, ge=1, description="OpenAI: requests-per-minute limit.")
    tpm: int | None = Field(None, ge=1, description="OpenAI: tokens-per-minute limit.")
    timeout: float = Field(120.0, gt=0, description="OpenAI: seconds before a request is abandoned and retried.")
    max_retries: int = Field(8, ge=0, description="OpenAI: retries per request on 429, 5xx, timeouts, connection errors; a request still failing after them stays pending and the next run retries it.")
    breaker_failures: int = Field(20, ge=1, description="OpenAI: the circuit breaker opens after this many failed attempts in a row ...")
    breaker_seconds: float = Field(60.0, gt=0, description="OpenAI: ... once that streak of failures has lasted this many seconds; the run then stops with exit status 3, its work kept (re-run once the server is back).")
    context_window: int | None = Field(None, ge=1, description="OpenAI: the model's context window; longer prompts are rejected with a recorded reason instead of being sent.")
    prices: dict[str, float] | None = Field(None, description="OpenAI: {'prompt': $ per 1M tokens, 'completion': $ per 1M tokens} for cost accounting.")
    vllm_python: str | None = Field(None, description="vLLM: the Python interpreter that has vLLM installed (server and batch runner); default $SYNTHLLM_VLLM_PYTHON, else .venv-vllm/bin/python in the working folder or the synthllm checkout, else this Python.")
    vllm_args: list[str] = Field(default_factory=list, description="vLLM: extra arguments for the server and the batch runner, e.g. ['--enforce-eager', '--max-model-len', '4096'].")
    vllm_startup_timeout: float = Field(600.0, gt=0, description="vLLM: seconds to wait for the managed server's /health before giving up (the error shows the server log's tail).")
    vllm_kv_cache_gb: float = Field(2.0, gt=0, description="vLLM CPU build: KV-cache size in GiB (VLLM_CPU_KVCACHE_SPACE, unless the environment sets it).")
    mode: Literal["live", "batch"] = Field("live", description="'live': one request at a time; 'batch': each stage's pending requests go out as batch jobs (OpenAI Batch API or vllm run-batch), resumable, at the batch price.")
    batch_submitter: Literal["auto", "openai", "vllm"] = Field("auto", description="Batch mode: 'openai' = the /v1/files + /v1/batches API of llm.base_url (or OpenAI); 'vllm' = vLLM's batch runner on this machine; 'auto' = 'vllm' with backend vllm, else 'openai'.")
    batch_discount: float = Field(0.5, gt=0, le=1, description="Batch mode: price factor applied to llm.prices (0.5 at OpenAI and Anthropic).")
    batch_completion_window: str = Field("24h", description="Batch mode (OpenAI API): the completion window requested.")
    batch_poll_interval: float | None = Field(None, gt=0, description="Batch mode: seconds between polls; default 30 for the OpenAI API, 2 for vLLM.")
    batch_max_requests: int = Field(50_000, ge=1, description="Batch mode: requests per request file at most (OpenAI: 50,000); larger batches are split.")
    batch_max_bytes: int = Field(200 * 1024 * 1024, ge=1024, description="Batch mode: bytes per request file at most (OpenAI: 200 MB).")
    batch_max_rounds: int = Field(3, ge=1, description="Batch mode: submissions per request at most; requests missing after an expired or partly failed batch are re-submitted until then.")

    @model_validator(mode="after")
    def _batch_needs_a_server(self) -> "LLMConfig":
        if self.mode == "batch" and self.backend == "embedded":
            raise ValueError("mode 'batch' needs backend 'openai' (a provider's Batch API) or 'vllm' (vllm run-batch)")
        if self.batch_submitter == "vllm" and self.backend == "openai" and self.mode == "batch":
            raise ValueError("batch_submitter 'vllm' runs the model on this machine: use backend 'vllm'")
        return self


class GenerationConfig(_Section):
    """Sampling settings shared by the model stages (each stage can override)."""

    max_tokens: int = Field(384, ge=1, description="Longest reply in tokens.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    presence_penalty: float = Field(0.0, ge=-2, le=2, description="OpenAI's presence penalty: a token's logit drops by this once it is in the reply (the prompt does not count, so copying the document is not penalised). Sent to servers; the embedded backend applies it too.")
    frequency_penalty: float = Field(0.0, ge=-2, le=2, description="OpenAI's frequency penalty: a token's logit drops by this for each time it is already in the reply (discourages a small model's repeated questions).")
    prompt_version: str | None = Field(None, description="Pin a prompt template version (e.g. 'v1'); default: newest.")
    grammar_version: str | None = Field(None, description="Pin the reply grammar version (prompts/<stage>.v<k>.ebnf); default: newest.")


class ConceptsConfig(GenerationConfig):
    enabled: bool = Field(True, description="Extract topics and key concepts (needed by Level-2 and Level-3).")
    temperature: float = Field(0.2, ge=0, description="Sampling temperature; low, since extraction wants the document's concepts, not variety.")
    max_document_chars: int = Field(6000, ge=200, description="Documents are cut to this many characters in the prompt (at a paragraph or sentence end when possible).")
    topics: tuple[int, int] = Field((1, 5), description="[min, max] topics per document in the reply grammar (SPEC: 1-5).")
    concepts_per_topic: tuple[int, int] = Field((5, 20), description="[min, max] key concepts per topic in the reply grammar (SPEC: 5-20).")

    @model_validator(mode="after")
    def _ranges(self) -> "ConceptsConfig":
        for name in ("topics", "concepts_per_topic"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"{name} must be [min, max] with 1 <= min <= max, got [{low}, {high}]")
        return self


class _DocumentQuestionsConfig(GenerationConfig):
    """What the two one-document question levels share."""

    questions_per_document: int = Field(5, ge=1, le=5, description="Ask for at most this many questions per document (SPEC: 1-5).")
    min_questions_per_document: int = Field(1, ge=1, le=5, description="The reply grammar holds a reply to at least this many questions (SPEC: 1). With a frequency penalty a small model otherwise ends early: SmolLM2-135M wrote 1.4 questions per document at frequency_penalty 1.0 instead of 3.")
    max_document_chars: int = Field(6000, ge=200, description="Document characters shown in the prompt.")

    @model_validator(mode="after")
    def _question_range(self) -> "_DocumentQuestionsConfig":
        if self.min_questions_per_document > self.questions_per_document:
            raise ValueError(f"min_questions_per_document ({self.min_questions_per_document}) exceeds "
                             f"questions_per_document ({self.questions_per_document})")
        return self


class Level1Config(_DocumentQuestionsConfig):
    enabled: bool = Field(True, description="Generate Level-1 questions (direct extraction from one document).")
    allow_unsuitable: bool = Field(True, description="Let the reply grammar accept the sentinel NOT_SUITABLE_FOR_QUESTIONS (SPEC). Off holds the model to writing questions: SmolLM2-135M chose the sentinel for 9 of 20 textbook sections under the grammar.")


class Level2Config(_DocumentQuestionsConfig):
    enabled: bool = Field(True, description="Generate Level-2 questions (recombined concepts of one document).")


class Level3Config(GenerationConfig):
    enabled: bool = Field(True, description="Generate Level-3 questions (concept-graph random walks, two reference documents).")
    epochs: int = Field(5, ge=1, description="Walk epochs; one epoch starts one walk from every topic (SPEC: 5).")
    max_walks: int | None = Field(None, ge=1, description="Cap on concept combinations (walks); default: all epochs x topics.")
    questions_per_walk: int = Field(3, ge=1, le=3, description="Ask for at most this many questions per combination (SPEC: 1-3).")
    reference_documents: int = Field(2, ge=1, description="Top-k documents by Jaccard similarity used as references (SPEC: 2).")
    max_reference_chars: int = Field(3000, ge=200, description="Characters of each reference document shown in the prompt.")
    novelty: float = Field(0.0, ge=0, description="Bias walks toward under-used concepts (0 = off, as in the paper).")


class AnswersConfig(GenerationConfig):
    enabled: bool = Field(True, description="Answer every question.")
    samples: int = Field(1, ge=1, description="Answers sampled per question; >1 keeps the majority final answer (self-consistency) and records agreement.")
    max_tokens: int = Field(512, ge=1, description="Longest answer in tokens.")


class DedupConfig(_Section):
    enabled: bool = Field(True, description="Remove exact and near-duplicate questions (first occurrence kept).")
    threshold: float = Field(0.7, gt=0, le=1, description="A question is a near-duplicate of an earlier kept one when the exact Jaccard similarity of their character n-gram sets (normalised text, numbers masked) is >= this; MinHash LSH only proposes the candidates.")
    num_perm: int = Field(128, ge=16, description="MinHash permutations (LSH bands and rows are chosen from the threshold).")
    ngram: int = Field(5, ge=1, description="Characters per shingle.")
    semantic_threshold: float | None = Field(None, gt=0, le=1, description="Optional semantic pass: a question whose MiniLM embedding has cosine similarity >= this with an earlier kept question's is removed too (SimHash LSH candidates, exact cosine). None (default) skips it.")


class BenchmarkConfig(_Section):
    name: str = Field(description="Benchmark name shown in reports.")
    path: Path = Field(description="JSONL file of benchmark test items.")
    fields: list[str] = Field(description="Fields of each item to check against (e.g. ['question']).")


class DecontaminationConfig(_Section):
    enabled: bool = Field(True, description="Remove samples that overlap benchmark test items (questions and answers are checked).")
    use_shared_benchmarks: bool = Field(True, description="Also check the SPEC's six benchmarks (GSM8K, MATH, Minerva-Math, OlympiadBench, CollegeMath, Gaokao-2023-En test sets) when found in a shared data folder (../shared/data or $SYNTHLLM_DATA).")
    benchmarks: list[BenchmarkConfig] = Field(default_factory=list, description="Extra benchmark files.")
    ngram: int = Field(13, ge=5, description="Token n-gram length used to find candidate overlaps.")


class FilterConfig(GenerationConfig):
    enabled: bool = Field(True, description="Stage 1: rate a sample of documents 1-10 with the LLM, train a random forest on MiniLM embeddings of them, score every document and keep those above the threshold.")
    domain: str = Field("mathematics", description="The domain the documents should belong to.")
    ratings_path: Path | None = Field(None, description="JSONL of {id, rating} (a stronger model's or a person's) used instead of LLM ratings.")
    sample_size: int = Field(200, ge=10, description="Documents rated by the LLM to train the scorer.")
    min_ratings: int = Field(10, ge=2, description="With fewer usable ratings than this, the filter keeps every document and says so in the manifest.")
    threshold: float = Field(6.5, ge=0, lt=10, description="Keep documents whose predicted rating (1-10) exceeds this (SPEC: 6.5); at 10 or above nothing could pass.")
    max_document_chars: int = Field(4000, ge=200, description="Document characters shown to the rater.")
    max_tokens: int = Field(96, ge=1, description="Longest rating reply in tokens.")
    temperature: float = Field(0.0, ge=0, description="Rating temperature (0 = greedy).")


class RayConfig(_Section):
    address: str | None = Field(None, description="Ray cluster to join ('auto' for a running one, or ray://host:10001); default: start a local Ray on this machine.")
    num_workers: int = Field(2, ge=1, description="Ray tasks at once in each step; each worker process builds its own backend once.")
    num_cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved by each worker.")
    num_gpus_per_worker: float = Field(0.0, ge=0, description="GPUs reserved by each worker (embedded backend on GPU nodes).")


class ReportConfig(_Section):
    enabled: bool = Field(True, description="Write report.html and report.json at the end of the run.")
    lm: bool = Field(False, description="Include reference-LM entropy estimates (slow on CPU).")


class Config(_Section):
    """A whole run."""

    input: InputConfig = Field(default_factory=InputConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    seed: int = Field(0, description="Seed for sampling, walks and everything random; same seed, same dataset.")
    shard_size: int = Field(32, ge=1, description="Records per committed shard; a crash loses at most one shard's uncommitted work (its model calls stay cached).")
    executor: Literal["local", "ray"] = Field("local", description="Where per-record steps run: this process, or Ray workers as Ray Data transformations (pip install 'synthllm[ray]').")
    ray: RayConfig = Field(default_factory=RayConfig)
    time_budget: float | None = Field(None, gt=0, description="Seconds the generation steps may take; when spent, no new shard starts and the run ends with a valid partial dataset (re-run to continue).")
    cache_path: Path | None = Field(None, description="Response cache file (SQLite); default $SYNTHLLM_CACHE or ~/.cache/synthllm/responses.sqlite3.")
    filter: FilterConfig = Field(default_factory=FilterConfig)
    concepts: ConceptsConfig = Field(default_factory=ConceptsConfig)
    level1: Level1Config = Field(default_factory=Level1Config)
    level2: Level2Config = Field(default_factory=Level2Config)
    level3: Level3Config = Field(default_factory=Level3Config)
    answers: AnswersConfig = Field(default_factory=AnswersConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontamination: DecontaminationConfig = Field(default_factory=DecontaminationConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="after")
    def _levels_need_concepts(self) -> "Config":
        if (self.level2.enabled or self.level3.enabled) and not self.concepts.enabled:
            raise ValueError("level2 and level3 need concepts.enabled: true")
        if self.llm.mode == "batch" and self.executor == "ray":
            raise ValueError("llm.mode 'batch' sends a stage as one job from this machine: use executor 'local'")
        return self


from .errors import ConfigError  # noqa: E402  (re-exported)


def load_yaml_model(model: type[BaseModel], path: str | Path | None = None, overrides: dict | None = None):
    """``(model validated from the YAML file merged with overrides, the folder relative paths start from)``.

    The one YAML loader of every synthllm config (runs, studies): one-line
    :class:`ConfigError` naming the file and the line or field.
    """
    data: dict = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        data = _read_yaml(path)
        base = path.parent
    data = _merge(data, overrides or {})
    try:
        return model.model_validate(data), base
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        value = first.get("input")
        got = f" (got {value!r})" if isinstance(value, (int, float, str)) and len(repr(value)) <= 40 else ""
        raise ConfigError(f"{path or 'config'}: {field}: {first['msg']}{got}") from None


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Read and validate a YAML config; ``overrides`` is merged on top (nested dicts).

    Relative paths inside the file are resolved against the file's folder.

    Parameters
    ----------
    path : the YAML file; ``None`` for the defaults plus ``overrides``.
    overrides : nested dict merged over the file's contents.

    Returns
    -------
    Config
        The validated configuration.

    Raises
    ------
    ConfigError
        One line naming the file and the line or field: a missing, unreadable,
        binary or non-UTF-8 file, invalid YAML, an unknown key, or a value out
        of range (including NaN and infinity).
    """
    config, base = load_yaml_model(Config, path, overrides)
    for holder, attr in ((config.input, "path"), (config.filter, "ratings_path"), (config, "cache_path")):
        value = getattr(holder, attr)
        if value is not None and not Path(value).is_absolute():
            setattr(holder, attr, base / value)
    for bench in config.decontamination.benchmarks:
        if not bench.path.is_absolute():
            bench.path = base / bench.path
    return config


def _read_yaml(path: Path) -> dict:
    """The mapping in a YAML file, or a one-line :class:`ConfigError` naming the file and line."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                          "a config is a YAML text file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        if isinstance(exc, yaml.reader.ReaderError):  # a control character: a binary file
            where = f":{text.count(chr(10), 0, exc.position) + 1}"
            problem = f"character #x{exc.character:04x} is not allowed in YAML; a config is a YAML text file"
        else:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, not {type(data).__name__}")
    return data


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
