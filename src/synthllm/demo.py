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
    # a 135M model keeps to the output formats only at low temperatures
    short = {"max_tokens": 256, "max_document_chars": 1800, "temperature": 0.4}
    overrides = {
        "input": {"path": str(corpus), "limit": docs},
        "llm": {"batch_size": 16},
        "shard_size": 8,
        # the sample is curated textbook text, and a 135M model cannot rate documents reliably
        "filter": {"enabled": False},
        "concepts": {**short, "temperature": 0.2},
        "level1": {**short, "questions_per_document": 2},
        "level2": {**short, "questions_per_document": 2},
        "level3": {"max_tokens": 256, "temperature": 0.4, "max_walks": max(2, docs // 2), "questions_per_walk": 2,
                   "max_reference_chars": 900},
        "answers": {"max_tokens": 160, "temperature": 0.3},
    }
    if model:
        overrides["llm"]["model"] = model
    return load_config(None, overrides)
