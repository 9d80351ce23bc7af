"""The fault proxy itself: fault parsing, schedules, the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from synthllm.llm.fault_proxy import Fault, FaultProxy


def post(url: str, payload: dict) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer k123"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_fault_specs_parse_and_bad_ones_are_refused():
    assert Fault.parse("429:2.5") == Fault("429", 2.5)
    assert Fault.parse("hang") == Fault("hang")
    with pytest.raises(ValueError, match="unknown fault"):
        Fault.parse("418")
    with pytest.raises(ValueError, match="takes no"):
        Fault.parse("hang:3")


def test_schedule_by_request_number_then_default():
    with FaultProxy(None, {2: "503:1.5", 3: "leak_auth"}, default="pass", canned_text="hi") as proxy:
        payload = {"model": "m", "messages": [{"role": "user", "content": "abcdefgh"}]}
        first, second, third, fourth = (post(proxy.url, payload) for _ in range(4))
    assert first[0] == 200 and json.loads(first[2])["choices"][0]["message"]["content"] == "hi"
    assert json.loads(first[2])["usage"]["prompt_tokens"] == 3  # 8 chars // 4 + 1
    assert second[0] == 503 and second[1]["retry-after"] == "1.5"
    assert third[0] == 400 and b"Bearer k123" in third[2]
    assert fourth[0] == 200
    assert [r.fault for r in proxy.requests] == ["pass", "503", "leak_auth", "pass"]


def test_callable_schedule():
    with FaultProxy(None, lambda number: "500" if number % 2 else "pass") as proxy:
        statuses = [post(proxy.url, {"messages": []})[0] for _ in range(4)]
    assert statuses == [500, 200, 500, 200]


def test_command_line_serves_canned_replies_and_refuses_bad_faults():
    bad = subprocess.run([sys.executable, "-m", "synthllm.llm.fault_proxy", "--fault", "x=500"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "expected N=FAULT" in bad.stderr
    process = subprocess.Popen([sys.executable, "-m", "synthllm.llm.fault_proxy", "--fault", "1=429:3"],
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("fault proxy listening on http://127.0.0.1:")
        url = line.split()[4]
        status, headers, _ = post(url, {"messages": []})
        assert status == 429 and headers["retry-after"] == "3"
        assert post(url, {"messages": []})[0] == 200
    finally:
        process.terminate()
        process.wait(10)
