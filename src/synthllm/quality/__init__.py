"""Data quality: domain filter (stage 1), near-duplicate removal, benchmark decontamination.

No model calls happen here: the domain scorer receives ratings as data (the
``rate`` stage, :mod:`synthllm.stages.rate`, produces them).
"""

from .decontam import BenchmarkSpec, Decontaminator, read_jsonl, shared_benchmark_specs, shared_data_dir, tokenize
from .dedup import (
    TextSignature,
    char_shingles,
    deduplicate,
    lsh_bands,
    lsh_params,
    mask_numbers,
    normalise_text,
    semantic_duplicates,
    text_signatures,
    word_shingles,
)
from .domain_filter import (
    DEFAULT_THRESHOLD,
    ColdStartClassifier,
    DomainScorer,
    embed_documents,
    load_ratings,
    sample_for_rating,
    split_by_score,
)

__all__ = [
    "BenchmarkSpec",
    "ColdStartClassifier",
    "DEFAULT_THRESHOLD",
    "Decontaminator",
    "TextSignature",
    "DomainScorer",
    "deduplicate",
    "embed_documents",
    "load_ratings",
    "char_shingles",
    "lsh_bands",
    "lsh_params",
    "mask_numbers",
    "semantic_duplicates",
    "normalise_text",
    "read_jsonl",
    "sample_for_rating",
    "shared_benchmark_specs",
    "shared_data_dir",
    "split_by_score",
    "text_signatures",
    "tokenize",
    "word_shingles",
]
