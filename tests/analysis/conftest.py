"""Fixtures of the analysis tests: the report of a run folder written by the real pipeline (scripted backend)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def one_blas_thread():
    """One BLAS and torch thread: on a shared two-core machine extra threads only contend."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def run_folder(scripted_run) -> Path:
    """The session's scripted pipeline run (``tests/scripted_run.py``): duplicates and a benchmark leak included."""
    return scripted_run


@pytest.fixture(scope="session")
def report_no_lm(run_folder, tmp_path_factory):
    """(report dict, output folder) of ``write_report(..., lm=False)`` on the scripted run."""
    from synthllm.analysis import write_report

    out = tmp_path_factory.mktemp("report")
    return write_report(run_folder, lm=False, out_dir=out), out
