"""Shared fixtures of the quality tests: the shared data folder and one decontamination index."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: ../shared/data relative to the repository root
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "gsm8k" / "test.jsonl").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def decontaminator(shared_data):
    from synthllm.quality import Decontaminator, shared_benchmark_specs

    return Decontaminator(shared_benchmark_specs(shared_data))
