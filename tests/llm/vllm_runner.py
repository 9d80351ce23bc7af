"""What test_vllm.py runs in a child process (so that it can be killed with -9), and the requests it shares.

``python vllm_runner.py batch STATE_DIR CACHE OUT``: answers :func:`stage_requests` in batch mode
(``llm.backend: vllm``, ``llm.mode: batch``: vLLM's batch runner) the way an executor's prefetch
does (``answer_requests`` into the response cache), then writes the reply texts and the backend's
usage to OUT (JSON).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "src/synthllm/data/openstax_sample.jsonl"
#: engine arguments for every vLLM the tests start: no torch.compile (33 s to start instead of 140 s)
VLLM_ARGS = ["--enforce-eager", "--max-model-len", "4096"]


def stage_requests(docs: int = 3):
    """Real Level-1 and concept-extraction requests for the first ``docs`` sample documents (seeded sampling)."""
    from synthllm.io import read_jsonl
    from synthllm.llm.base import ChatRequest, Sampling
    from synthllm.stages.concepts import ExtractConcepts
    from synthllm.stages.level1 import Level1Questions

    records = read_jsonl(SAMPLE)[:docs]
    stages = [ExtractConcepts(Sampling(max_tokens=64, temperature=0.2, seed=3), max_document_chars=1200),
              Level1Questions(Sampling(max_tokens=64, temperature=0.4, seed=3), max_questions=1,
                              max_source_chars=1200)]
    requests = []
    for stage in stages:
        for record in records:
            requests.append(ChatRequest.from_messages(stage.build(record), stage.sampling, 0, stage.prefill))
    return requests


def batch_config():
    from synthllm.config import Config

    return Config.model_validate({"llm": {"backend": "vllm", "mode": "batch", "vllm_args": VLLM_ARGS,
                                          "batch_poll_interval": 0.5,
                                          "prices": {"prompt": 0.2, "completion": 0.8}}})


def main(argv: list[str]) -> None:
    from synthllm.executors.local import answer_requests
    from synthllm.llm.cache import ResponseCache
    from synthllm.llm.factory import make_backend

    mode, state_dir, cache_path, out = argv
    assert mode == "batch"
    backend = make_backend(batch_config(), state_dir=Path(state_dir))
    cache = ResponseCache(cache_path)
    replies = answer_requests(stage_requests(), backend, cache)
    result = {"texts": [r.text for r in replies], "errors": [r.error for r in replies], "usage": backend.usage}
    backend.close()
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
