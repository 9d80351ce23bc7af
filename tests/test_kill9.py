"""kill -9 at random moments, resume, and get exactly the uninterrupted dataset."""

import random
import subprocess
import sys
import time
from pathlib import Path

import yaml

from testdata import REPO

RUNNER = Path(__file__).parent / "kill_runner.py"


def write_config(tmp_path, name):
    config = {"input": {"path": str(REPO / "src/synthllm/data/openstax_sample.jsonl"), "limit": 12},
              "shard_size": 3, "level3": {"max_walks": 6}, "cache_path": str(tmp_path / f"{name}.sqlite3"),
              "decontamination": {"use_shared_benchmarks": False}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def calls(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_kill_minus_9_then_resume_gives_the_same_dataset(tmp_path):
    reference_log = tmp_path / "ref.log"
    subprocess.run([sys.executable, str(RUNNER), str(write_config(tmp_path, "ref")), str(tmp_path / "ref"),
                    str(reference_log)], check=True, capture_output=True)
    config = write_config(tmp_path, "killed")
    log = tmp_path / "killed.log"
    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        process = subprocess.Popen([sys.executable, str(RUNNER), str(config), str(tmp_path / "run"), str(log)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 5.0))  # python start-up is ~1 s; then shards are committing
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait()
    subprocess.run([sys.executable, str(RUNNER), str(config), str(tmp_path / "run"), str(log)], check=True,
                   capture_output=True)
    assert kills >= 1
    assert (tmp_path / "run" / "dataset.jsonl").read_bytes() == (tmp_path / "ref" / "dataset.jsonl").read_bytes()
    # nothing redone beyond what was in flight at each kill (one batch of 4 requests per kill)
    assert calls(log) <= calls(reference_log) + 4 * kills
    leftovers = [p for p in (tmp_path / "run").rglob("*.tmp")]
    assert all(p.name.startswith(".") for p in leftovers)  # only abandoned temp files, never a half shard
