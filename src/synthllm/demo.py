"""The demo: the OpenStax sample corpus with the embedded model, sized for a laptop CPU."""

from __future__ import annotations

from pathlib import Path

from .config import Config, load_config
from .quality.decontam import shared_data_dir

SAMPLE_CORPUS = Path(__file__).parent / "data" / "openstax_sample.jsonl"


def demo_config(docs: int, corpus: Path | None = None, model: str | None = None) -> Config:
    """A small, fast configuration for the demo corpus (short prompts and replies for a CPU)."""
    if corpus is None:
        data = shared_data_dir()
        shared = data / "corpus" / "openstax_math.jsonl" if data else None
        corpus = shared if shared and shared.exists() else SAMPLE_CORPUS
    # On a CPU generation time is (sequences x tokens): one batch per stage, short replies,
    # few questions. A 135M model keeps to the output formats only at low temperatures.
    overrides = {
        "input": {"path": str(corpus), "limit": docs},
        "llm": {"batch_size": 32},
        "shard_size": 32,
        # the sample is curated textbook text, and a 135M model cannot rate documents reliably
        "filter": {"enabled": False},
        # The reply grammars (issue #14) keep even a 135M model in format, so the demo asks for
        # several questions per document (Fig. 5's within-document histogram needs pairs) and
        # bounds the concept lists to what fits its token budget (SPEC: 1-5 topics, 5-20 concepts).
        "concepts": {"max_tokens": 200, "max_document_chars": 1500, "temperature": 0.2,
                     "topics": [1, 3], "concepts_per_topic": [5, 8]},
        # Three questions held by the grammar, made to differ by a frequency penalty on the reply:
        # unpenalised, SmolLM2-135M wrote the same question three times (1.25 distinct per
        # document, Level-1 prompt v6); at frequency_penalty 1.0, 2.7 (grounding 0.92 -> 0.83).
        "level1": {"max_tokens": 240, "max_document_chars": 1500, "temperature": 0.4, "questions_per_document": 3,
                   "min_questions_per_document": 3, "frequency_penalty": 1.0, "allow_unsuitable": False},
        # three Level-2 blocks (2-3 concepts and a question of up to 400 characters each) need about
        # 400 tokens: at 320, a cut reply left one of 20 documents with a single question
        "level2": {"max_tokens": 400, "max_document_chars": 1500, "temperature": 0.8, "questions_per_document": 3,
                   "min_questions_per_document": 3, "frequency_penalty": 1.0},
        # 160 tokens cut most Level-3 replies (6 of 10 embedded, 9 of 10 through vLLM)
        "level3": {"max_tokens": 224, "temperature": 0.4, "max_walks": max(2, docs // 2), "questions_per_walk": 1,
                   "max_reference_chars": 700},
        "answers": {"max_tokens": 128, "temperature": 0.3},
    }
    if model:
        overrides["llm"]["model"] = model
    return load_config(None, overrides)
