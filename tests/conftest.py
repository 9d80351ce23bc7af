"""Test settings shared by every test: offline hub, private caches, data paths."""

import os
from pathlib import Path

import pytest

# An accidental hub download must fail in seconds, not hang.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from testdata import SHARED_DATA


@pytest.fixture(autouse=True)
def _private_response_cache(tmp_path, monkeypatch):
    """Each test gets its own response cache unless it sets one itself."""
    monkeypatch.setenv("SYNTHLLM_CACHE", str(tmp_path / "responses.sqlite3"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def math_corpus(shared_data) -> Path:
    return shared_data / "corpus" / "openstax_math.jsonl"
