"""The guard that keeps a managed server from outliving synthllm, with real processes (no vLLM needed).

The guarded "server" is a Python process that starts a grandchild (as vLLM starts its engine) and
sleeps; each test checks that neither is left once the pipe's write end is closed, whether by
closing it or by ``kill -9`` of the process that holds it.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from synthllm.llm.vllm_server import start_guarded

SERVER = [sys.executable, "-c", textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(child.pid, flush=True)
    time.sleep(600)
""")]


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != b"Z":
                members.append(int(entry.name))
    return members


def wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def test_closing_the_pipe_stops_the_server_and_its_children(tmp_path):
    log_path = tmp_path / "log"
    with open(log_path, "wb") as log:
        guard, write_end = start_guarded(SERVER, sys.executable, grace=5, log=log)
    assert wait_for(lambda: len(group_members(guard.pid)) >= 3)  # guard, server, grandchild
    assert os.getpgid(guard.pid) != os.getpgid(0)  # its own group: Ctrl-C in our terminal does not reach it
    os.close(write_end)
    guard.wait(30)
    assert wait_for(lambda: group_members(guard.pid) == [])


def test_kill_minus_9_of_the_holder_stops_the_server_and_its_children(tmp_path):
    # The holder stands for synthllm: it starts the guarded server, prints the group id, and waits.
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from synthllm.llm.vllm_server import start_guarded
        guard, write_end = start_guarded({SERVER!r}, sys.executable, 5, open({str(tmp_path / 'log')!r}, 'wb'))
        print(guard.pid, flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    pgid = int(holder.stdout.readline())
    assert wait_for(lambda: len(group_members(pgid)) >= 3)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert wait_for(lambda: group_members(pgid) == [])
