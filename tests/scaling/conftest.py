"""Shared fixture for the scaling tests: the reference data in shared/data/scaling."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SCALING_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "scaling"


@pytest.fixture(scope="session")
def scaling_data() -> Path:
    """The shared scaling data folder; skips the test when it is absent."""
    if not SCALING_DATA.is_dir():
        pytest.skip(f"shared scaling data not found at {SCALING_DATA}")
    return SCALING_DATA
