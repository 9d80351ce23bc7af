"""Batch mode against a Batch-API server on loopback: splitting, expiry, partial failure, resume, cost.

The server (``batch_api_fake.py``) is small but real HTTP, driven by the real ``openai`` client.
"""

import json
import threading
import time

import pytest

from batch_api_fake import FakeBatchAPI

from synthllm.config import Config
from synthllm.errors import ConfigError
from synthllm.llm.base import ChatRequest, Sampling
from synthllm.llm.batch import BatchBackend, OpenAIBatchSubmitter, split_lines
from synthllm.llm.factory import make_backend
from synthllm.llm.openai_backend import OpenAIBackend

pytest.importorskip("openai")


@pytest.fixture
def fake():
    servers = []

    def start(outcomes):
        server = FakeBatchAPI(outcomes).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def requests_for(n, stop=(), **penalties):
    sampling = Sampling(max_tokens=8, temperature=0.0, stop=stop, **penalties)
    return [ChatRequest.from_messages([{"role": "user", "content": f"question {i}"}], sampling) for i in range(n)]


def backend_for(server, state_dir, prices=None, **options):
    live = OpenAIBackend("fake-model", base_url=server.base_url, prices=prices)
    submitter = OpenAIBatchSubmitter(server.base_url, poll_interval=0.05)
    return BatchBackend(live, submitter, state_dir, **options)


def test_expiry_and_partial_failure_resubmit_only_what_is_missing(fake, tmp_path):
    # part 0 expires after one answer, part 1 has a 500 line and a 400 line, part 2 completes,
    # then the re-submissions complete
    server = fake([("expire", 1), ("fail_lines", {0: 500, 1: 400}), "complete", "complete", "complete"])
    backend = backend_for(server, tmp_path, prices={"prompt": 2.0, "completion": 4.0}, max_requests=3)
    requests = requests_for(7)
    keys = [r.cache_key("fake-model") for r in requests]
    replies = backend.generate(requests)
    # split into files of at most 3 requests, then only the missing ones went out again
    assert server.submissions[:3] == [keys[0:3], keys[3:6], keys[6:7]]
    assert server.submissions[3:] == [keys[1:3], [keys[3]]]  # not keys[4]: a 400 is not worth re-sending
    assert len(server.submissions) == 5
    for i, reply in enumerate(replies):
        if i == 4:
            assert not reply.ok and "HTTP 400" in reply.error and "fake failure 400" in reply.error
        else:
            assert reply.ok and reply.text == f"reply to: question {i}", (i, reply)
    usage = backend.usage
    assert usage["requests"] == 7 and usage["failed"] == 1 and usage["submissions"] == 5
    assert backend.prices == {"prompt": 1.0, "completion": 2.0}  # what executors price replies with
    assert usage["cost"] == pytest.approx(usage["cost_live"] / 2) and usage["cost"] > 0
    state = json.loads(next(tmp_path.glob("batch-*/state.json")).read_text())
    assert state["done"] and [p["ended"] for p in state["parts"]][:2] == ["expired", "completed"]
    backend.close()
    assert not list(tmp_path.glob("batch-*/part-*"))  # files of a finished batch go at close; the state stays


def test_requests_still_missing_after_max_rounds_fail_with_the_reason(fake, tmp_path):
    server = fake([("expire", 0)])
    backend = backend_for(server, tmp_path, max_rounds=2)
    replies = backend.generate(requests_for(2))
    assert len(server.submissions) == 2
    assert all(not r.ok and "expired" in r.error and "after 2 batch submissions" in r.error for r in replies)


def test_identical_requests_go_out_once_and_stops_are_applied(fake, tmp_path):
    server = fake(["complete"])
    backend = backend_for(server, tmp_path)
    requests = requests_for(2, stop=("question",), frequency_penalty=0.5) * 2  # "reply to: question 0" is cut at the stop string
    replies = backend.generate(requests)
    assert len(server.submissions) == 1 and len(server.submissions[0]) == 2
    assert [r.text for r in replies] == ["reply to: "] * 4
    line = json.loads(next(tmp_path.glob("batch-*/part-000.jsonl")).read_text().splitlines()[0])
    assert line["url"] == "/v1/chat/completions" and line["body"]["stop"] == ["question"]
    assert line["body"]["frequency_penalty"] == 0.5 and "presence_penalty" not in line["body"]  # sent when set
    assert line["body"]["model"] == "fake-model" and "extra_body" not in line["body"]


def test_a_killed_run_polls_the_same_batch_instead_of_paying_twice(fake, tmp_path):
    server = fake(["running"])
    first = backend_for(server, tmp_path)
    requests = requests_for(3)
    waiting = threading.Thread(target=first.generate, args=(requests,), daemon=True)
    waiting.start()  # stands for a run that is killed while it waits: it never gets its answers
    state_path = None
    for _ in range(200):
        state_path = next(tmp_path.glob("batch-*/state.json"), None)
        if state_path and json.loads(state_path.read_text())["parts"][0]["job"]:
            break
        time.sleep(0.05)
    state = json.loads(state_path.read_text())
    assert state["parts"][0]["status"] == "submitted"
    # As if the run died between submitting and writing the job down: the next run finds it by its tag.
    state["parts"][0].update(job=None, status="pending")
    state_path.write_text(json.dumps(state))
    server.outcomes = ["complete"]
    replies = backend_for(server, tmp_path).generate(requests)
    assert len(server.submissions) == 1  # polled the same batch; nothing paid twice
    assert [r.text for r in replies] == [f"reply to: question {i}" for i in range(3)]
    waiting.join(10)


def test_split_lines_respects_both_limits():
    lines = [json.dumps({"i": i, "pad": "x" * 40}) + "\n" for i in range(10)]
    size = len(lines[0].encode())
    groups = list(split_lines(lines, max_requests=4, max_bytes=3 * size))
    assert [len(g) for g in groups] == [3, 3, 3, 1]
    assert sum(groups, []) == lines
    assert [len(g) for g in split_lines(lines, max_requests=4, max_bytes=10 ** 6)] == [4, 4, 2]
    with pytest.raises(ValueError, match="file limit"):
        list(split_lines(lines, max_requests=4, max_bytes=size - 1))


def test_factory_builds_a_batch_backend_and_needs_a_state_folder(fake, tmp_path):
    server = fake(["complete"])
    config = Config.model_validate({"llm": {"backend": "openai", "mode": "batch", "model": "fake-model",
                                            "base_url": server.base_url, "batch_poll_interval": 0.05,
                                            "prices": {"prompt": 1.0, "completion": 1.0}}})
    with pytest.raises(ConfigError, match="needs a folder"):
        make_backend(config)
    backend = make_backend(config, state_dir=tmp_path / "llm")
    assert backend.batch_mode and isinstance(backend, BatchBackend)
    assert backend.prices == {"prompt": 0.5, "completion": 0.5}
    assert backend.generate(requests_for(1))[0].text == "reply to: question 0"
    backend.close()


@pytest.mark.parametrize("llm, message", [
    ({"backend": "embedded", "mode": "batch"}, "needs backend 'openai'"),
    ({"backend": "openai", "mode": "batch", "batch_submitter": "vllm"}, "use backend 'vllm'"),
])
def test_config_rejects_batch_mode_without_a_batch_capable_backend(llm, message):
    from synthllm.config import load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, {"llm": llm})
