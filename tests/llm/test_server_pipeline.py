"""The whole pipeline against a real OpenAI-compatible server (`transformers serve` on loopback)."""

import pyarrow.parquet as pq
import pytest

from synthllm.curate import DATASET_SCHEMA
from synthllm.demo import demo_config
from synthllm.pipeline import Pipeline

pytestmark = pytest.mark.server


def test_pipeline_end_to_end_against_transformers_serve(openai_server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    config = demo_config(2)
    config.llm.backend = "openai"
    config.llm.model = openai_server.model
    config.llm.base_url = openai_server.base_url
    config.llm.max_concurrency = 4
    for section in (config.concepts, config.level1, config.level2, config.level3, config.answers):
        section.max_tokens = 48
    config.level3.max_walks = 1
    pipeline = Pipeline(config, tmp_path / "run", show_progress=False)
    manifest = pipeline.run()
    pipeline.close()
    assert manifest["reconciliation"] == {"ok": True, "problems": []}
    stages = manifest["stages"]
    assert stages["concepts"]["in"] == 2 and stages["concepts"]["failed"] == 0
    assert stages["level1"]["this_run"]["model_calls"] == 2 and stages["level1"]["completion_tokens"] > 0
    table = pq.read_table(tmp_path / "run" / "dataset.parquet")
    assert table.schema.equals(DATASET_SCHEMA)  # the same format as the embedded backend writes
    assert all(row["model"] == openai_server.model for row in table.to_pylist())
    assert "sk-local-test" not in (tmp_path / "run" / "manifest.json").read_text()
