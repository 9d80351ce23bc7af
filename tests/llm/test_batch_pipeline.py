"""A whole run in batch mode (``llm.mode: batch``) against a Batch API server on loopback.

The executor hands each model stage's uncached requests to the batch backend as one job
(``executors.local.prefetch``); the shards then replay from the cache. The same seed gives
the same dataset as a live run, and a rerun submits nothing.
"""

from __future__ import annotations

import time

import pytest

import batch_api_fake
from batch_api_fake import FakeBatchAPI
from scripted import respond
from synthllm import Pipeline
from synthllm.llm.scripted import ScriptedBackend
from test_pipeline import make_config, run

pytest.importorskip("openai")


def scripted_completion(body: dict) -> dict:
    """The fake server's reply to one request line: what the scripted model says."""
    text = respond(body["messages"])
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10}}


def test_a_run_in_batch_mode_gives_the_live_dataset_with_one_job_per_model_stage(tmp_path, monkeypatch):
    monkeypatch.setattr(batch_api_fake, "completion", scripted_completion)
    server = FakeBatchAPI(["complete"]).start()
    try:
        live = run(make_config(tmp_path, cache_path=str(tmp_path / "live.sqlite3")), tmp_path / "live",
                   ScriptedBackend(respond))
        config = make_config(tmp_path, cache_path=str(tmp_path / "batch.sqlite3"),
                             llm={"backend": "openai", "model": "scripted", "base_url": server.base_url,
                                  "mode": "batch", "batch_poll_interval": 0.05})
        pipeline = Pipeline(config, tmp_path / "batch", show_progress=False)
        try:
            manifest = pipeline.run()
        finally:
            pipeline.close()
        model_stages = [s for s in ("concepts", "level1", "level2", "level3", "answers") if live["stages"][s]["in"]]
        assert len(server.submissions) == len(model_stages)  # one job per stage, not one per shard
        assert manifest["reconciliation"]["ok"]
        for stage in model_stages:
            assert manifest["stages"][stage]["this_run"]["batch_requests"] > 0
        assert (tmp_path / "batch" / "dataset.jsonl").read_bytes() == (tmp_path / "live" / "dataset.jsonl").read_bytes()
        again = Pipeline(config, tmp_path / "batch", show_progress=False)
        try:
            again.run()
        finally:
            again.close()
        assert len(server.submissions) == len(model_stages)  # a finished run submits nothing
    finally:
        server.stop()
