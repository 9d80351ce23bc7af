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
    model_config = ConfigDict(extra="forbid")


class InputConfig(_Section):
    path: Path | None = Field(None, description="Corpus: a .jsonl / .jsonl.gz / .parquet file, or a folder of .txt/.md files.")
    format: Literal["auto", "jsonl", "parquet", "text"] = Field("auto", description="Input format; 'auto' decides from the path.")
    text_field: str = Field("text", description="Field holding the document text (JSONL/Parquet).")
    id_field: str | None = Field("id", description="Field holding the document id; when absent from a record, the id is a hash of the text.")
    limit: int | None = Field(None, ge=1, description="Use only the first N documents.")
    min_chars: int = Field(50, ge=0, description="Documents shorter than this are skipped and counted as 'too_short'.")


class LLMConfig(_Section):
    backend: Literal["embedded", "openai"] = Field("embedded", description="'embedded': a local transformers model; 'openai': any OpenAI-compatible chat-completions server.")
    model: str = Field("smollm2-135m-instruct", description="Embedded: 'smollm2-135m-instruct' (packaged), a model folder or a .gguf file. OpenAI: the served model name.")
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
    max_retries: int = Field(8, ge=0, description="OpenAI: retries per request on 429, 5xx, timeouts, connection errors.")
    context_window: int | None = Field(None, ge=1, description="OpenAI: the model's context window; longer prompts are rejected with a recorded reason instead of being sent.")
    prices: dict[str, float] | None = Field(None, description="OpenAI: {'prompt': $ per 1M tokens, 'completion': $ per 1M tokens} for cost accounting.")


class GenerationConfig(_Section):
    """Sampling settings shared by the model stages (each stage can override)."""

    max_tokens: int = Field(384, ge=1, description="Longest reply in tokens.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
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
    max_document_chars: int = Field(6000, ge=200, description="Document characters shown in the prompt.")


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
    threshold: float = Field(0.8, gt=0, le=1, description="Estimated Jaccard similarity of word n-gram sets above which two questions are near-duplicates.")
    num_perm: int = Field(128, ge=16, description="MinHash permutations.")
    ngram: int = Field(5, ge=1, description="Word n-gram size for MinHash shingles.")


class BenchmarkConfig(_Section):
    name: str = Field(description="Benchmark name shown in reports.")
    path: Path = Field(description="JSONL file of benchmark test items.")
    fields: list[str] = Field(description="Fields of each item to check against (e.g. ['question']).")


class DecontaminationConfig(_Section):
    enabled: bool = Field(True, description="Remove samples that overlap benchmark test items (questions and answers are checked).")
    use_shared_benchmarks: bool = Field(True, description="Also check GSM8K test and MATH test when found in a shared data folder (../shared/data or $SYNTHLLM_DATA).")
    benchmarks: list[BenchmarkConfig] = Field(default_factory=list, description="Extra benchmark files.")
    ngram: int = Field(13, ge=5, description="Token n-gram length used to find candidate overlaps.")


class FilterConfig(GenerationConfig):
    enabled: bool = Field(True, description="Stage 1: rate a sample of documents 1-10 with the LLM, train a random forest on MiniLM embeddings of them, score every document and keep those above the threshold.")
    domain: str = Field("mathematics", description="The domain the documents should belong to.")
    ratings_path: Path | None = Field(None, description="JSONL of {id, rating} (a stronger model's or a person's) used instead of LLM ratings.")
    sample_size: int = Field(200, ge=10, description="Documents rated by the LLM to train the scorer.")
    min_ratings: int = Field(10, ge=2, description="With fewer usable ratings than this, the filter keeps every document and says so in the manifest.")
    threshold: float = Field(6.5, description="Keep documents whose predicted rating exceeds this (SPEC: 6.5).")
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
        return self


from .errors import ConfigError  # noqa: E402  (re-exported)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Read and validate a YAML config; ``overrides`` is merged on top (nested dicts).

    Relative paths inside the file are resolved against the file's folder.
    """
    data: dict = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        base = path.parent
    data = _merge(data, overrides or {})
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{path or 'config'}: {field}: {first['msg']}") from None
    for holder, attr in ((config.input, "path"), (config.filter, "ratings_path"), (config, "cache_path")):
        value = getattr(holder, attr)
        if value is not None and not Path(value).is_absolute():
            setattr(holder, attr, base / value)
    for bench in config.decontamination.benchmarks:
        if not bench.path.is_absolute():
            bench.path = base / bench.path
    return config


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
