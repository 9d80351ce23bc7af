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


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray (2 CPUs, no dashboard) per test module that needs one (start-up takes 5-20 s here).

    Per module, not per session, so that an idle cluster does not share the two cores with the rest
    of the suite.
    """
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report attempts from the test cluster
    # Workers import test modules by name (functions and classes pickled by reference). Ray's
    # processes inherit the environment at init, so PYTHONPATH is set just for it (a runtime_env
    # would instead make Ray start fresh workers for every first task).
    tests = Path(__file__).resolve().parent
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tests), str(tests / "llm"), saved]))
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def scripted_run(tmp_path_factory) -> Path:
    """A run folder written by the real pipeline with the scripted backend (see ``scripted_run.py``).

    Session-wide and read-only: tests that change a run folder copy it first.
    """
    from scripted_run import build_scripted_run

    return build_scripted_run(tmp_path_factory.mktemp("scripted"))
