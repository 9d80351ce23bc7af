"""The Ray executor: same dataset as the local executor, worker deaths and re-runs lose nothing."""

import functools
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from scripted import respond
from synthllm import Pipeline, load_config
from synthllm.config import BenchmarkConfig
from synthllm.executors.ray_executor import RayExecutor, RayNotInstalled, ray_map
from synthllm.llm.scripted import ScriptedBackend
from synthllm.store import RunStore

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TESTS = Path(__file__).resolve().parent
SAMPLE = TESTS.parent / "src" / "synthllm" / "data" / "openstax_sample.jsonl"
MODEL_STAGES = ("concepts", "level1", "level2", "level3", "answers")
OUTCOMES = ("in", "ok", "out", "unsuitable", "unparsable", "failed")

pytestmark = pytest.mark.ray  # select or leave out with -m ray / -m "not ray"
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")


def make_config(**overrides):
    """The small test run: 8 sample documents in shards of 3, filter off, 6 walks; ``overrides`` merged per section."""
    base = {"input": {"path": str(SAMPLE), "limit": 8}, "shard_size": 3, "filter": {"enabled": False},
            "level3": {"max_walks": 6}, "decontamination": {"use_shared_benchmarks": False},
            "ray": {"num_workers": 2}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return load_config(None, base)


def run(config, out, backend=None, factory=None):
    pipeline = Pipeline(config, out, backend=backend, backend_factory=factory, show_progress=False)
    try:
        return pipeline.run()
    finally:
        pipeline.close()


def on_ray(config, cache: Path):
    """The same config, run by Ray workers, with its own response cache (so the workers really generate)."""
    return config.model_copy(update={"executor": "ray", "cache_path": cache})


_answers_seen = 0


def dies_once(marker: str, messages):
    """``respond``, except that the worker process dies at its third answer prompt, the first time only."""
    global _answers_seen
    if "Solve the problem" in messages[-1]["content"]:
        _answers_seen += 1
        if _answers_seen == 3 and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os._exit(1)  # as a segfault or the OOM killer would: no cleanup, no exception
    return respond(messages)


def fails_on_empty(items: list) -> int:
    if not items:
        raise ValueError("an empty shard")
    return len(items)


@needs_ray
@pytest.mark.parametrize("actors", [False, True], ids=["tasks", "actor pool (as for GPU steps)"])
def test_ray_map_keeps_input_order_and_raises_worker_errors_as_themselves(tmp_path, ray_cluster, actors):
    seen = []
    assert ray_map(len, [[1] * n for n in (3, 0, 5, 1)], make_config(), actors=actors,
                   on_result=lambda index, result: seen.append((index, result))) == [3, 0, 5, 1]
    assert sorted(seen) == [(0, 3), (1, 0), (2, 5), (3, 1)]
    with pytest.raises(ValueError, match="an empty shard") as raised:
        ray_map(fails_on_empty, [[1], []], make_config(), actors=actors)
    assert "raised in a Ray worker" in "".join(raised.value.__notes__)


def mixed_corpus(tmp_path: Path) -> Path:
    """10 sample math documents, a copy of the first under another id, and 4 off-topic ones (rated 2/10)."""
    from test_pipeline import NON_MATH

    corpus = tmp_path / "mixed.jsonl"
    math_lines = SAMPLE.read_text().splitlines()[:10]
    math_lines.append(json.dumps({**json.loads(math_lines[0]), "id": "copy-of-the-first"}))
    off_topic = [json.dumps({"id": f"hist-{i}-{j}", "text": text + f" Part {j}."})
                 for i, text in enumerate(NON_MATH) for j in range(2)]
    corpus.write_text("\n".join(math_lines + off_topic) + "\n")
    return corpus


@needs_ray
def test_ray_run_gives_the_local_dataset_and_a_rerun_does_nothing(tmp_path, ray_cluster):
    # every step that runs on Ray workers does work here: the filter drops the off-topic documents,
    # dedup removes repeated questions, decontamination removes two questions planted in a benchmark
    config = make_config(input={"path": str(mixed_corpus(tmp_path)), "limit": None}, filter={"enabled": True})
    run(config, tmp_path / "first", ScriptedBackend(respond))
    dataset = (tmp_path / "first" / "dataset.jsonl").read_text().splitlines()
    questions = [json.loads(line)["question"] for line in dataset]
    benchmark = tmp_path / "benchmark.jsonl"
    benchmark.write_text("".join(json.dumps({"id": f"b{i}", "problem": q}) + "\n" for i, q in enumerate(questions[:2])))
    config = config.model_copy(update={"decontamination": config.decontamination.model_copy(update={
        "benchmarks": [BenchmarkConfig(name="planted", path=benchmark, fields=["problem"])]})})
    local = run(config, tmp_path / "local", ScriptedBackend(respond))
    ray_config = on_ray(config, tmp_path / "ray-cache.sqlite3")
    factory = functools.partial(ScriptedBackend, respond)
    manifest = run(ray_config, tmp_path / "ray", factory=factory)
    again = run(ray_config, tmp_path / "ray", factory=factory)
    assert (tmp_path / "ray" / "dataset.jsonl").read_bytes() == (tmp_path / "local" / "dataset.jsonl").read_bytes()
    assert manifest["reconciliation"] == {"ok": True, "problems": []}
    assert local["stages"]["filter"]["removed"] == 4 and local["stages"]["decontam"]["removed"] == 2
    assert local["stages"]["dedup"]["removed"] > 0
    for stage in ("filter", "dedup", "decontam"):
        assert manifest["stages"][stage] == local["stages"][stage]
    for name in ("quality/dedup.jsonl", "quality/decontam.jsonl"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    assert stage_files(tmp_path / "ray", "filter") == stage_files(tmp_path / "local", "filter")
    for stage in ("rate", *MODEL_STAGES):
        ours, theirs = manifest["stages"][stage], local["stages"][stage]
        # (model calls vs cache hits may differ: two workers can ask the same request at the same time)
        assert {k: ours[k] for k in OUTCOMES} == {k: theirs[k] for k in OUTCOMES}
        assert ours["model_calls"] + ours["cached"] == theirs["model_calls"] + theirs["cached"]
        assert ours["this_run"]["model_calls"] > 0 and ours["this_run"]["resumed_records"] == 0
        # the re-run finds every shard committed: no model calls, everything counted as already done
        assert again["stages"][stage]["this_run"] == {"model_calls": 0, "cached": 0, "stopped": False,
                                                      "pending": 0, "resumed_records": ours["in"]}
    assert (tmp_path / "ray" / "dataset.jsonl").read_bytes() == (tmp_path / "local" / "dataset.jsonl").read_bytes()


@needs_ray
def test_stage_errors_reach_the_driver_as_themselves(tmp_path, ray_cluster):
    from synthllm.llm.base import Sampling
    from synthllm.stages.level1 import Level1Questions

    store = RunStore(tmp_path / "run")
    stage = Level1Questions(Sampling(max_tokens=64, temperature=0.0, top_p=1.0, seed=0), None, 2, 2000)
    shard = ("part-00000", lambda: [{"id": "d1"}], 1)  # no "text": building the prompt fails in the worker
    with pytest.raises(KeyError, match="text"):
        RayExecutor(make_config(), functools.partial(ScriptedBackend, respond)).run_model_stage(stage, [shard], store)
    assert not store.shards("level1")


@needs_ray
def test_a_worker_killed_mid_stage_is_restarted_and_nothing_is_lost_or_repeated(tmp_path, ray_cluster):
    # one worker: which replies it had cached before dying is then exact
    config = make_config(ray={"num_workers": 1})
    local = run(config, tmp_path / "local", ScriptedBackend(respond))
    marker = tmp_path / "worker-died"
    # batches of two: the worker dies in its second answer batch, with the first one cached
    factory = functools.partial(ScriptedBackend, functools.partial(dies_once, str(marker)), batch_size=2)
    manifest = run(on_ray(config, tmp_path / "ray-cache.sqlite3"), tmp_path / "ray", factory=factory)
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker process really died
    assert (tmp_path / "ray" / "dataset.jsonl").read_bytes() == (tmp_path / "local" / "dataset.jsonl").read_bytes()
    assert manifest["reconciliation"]["ok"]
    answers, reference = manifest["stages"]["answers"], local["stages"]["answers"]
    assert {k: answers[k] for k in OUTCOMES} == {k: reference[k] for k in OUTCOMES}
    # the restarted worker replayed the two replies the dead one had cached and asked the rest once
    assert answers["cached"] == reference["cached"] + 2
    assert answers["model_calls"] == reference["model_calls"] - 2
    ids = [r["id"] for r in RunStore(tmp_path / "ray").iter_records("answers")]
    assert len(ids) == len(set(ids)) == reference["out"]


@needs_ray
def test_a_killed_driver_resumes_on_ray_with_nothing_lost_or_repeated(tmp_path, ray_cluster):
    """kill -9 the driver (a separate process on this cluster) mid-run, twice; the re-run completes the dataset."""
    import random
    import subprocess
    import time

    import yaml
    from test_kill9 import RUNNER, calls, write_config

    reference_log = tmp_path / "ref.log"
    subprocess.run([sys.executable, str(RUNNER), str(write_config(tmp_path, "ref")), str(tmp_path / "ref"),
                    str(reference_log)], check=True, capture_output=True)
    config_path = write_config(tmp_path, "ray")
    config = yaml.safe_load(config_path.read_text())
    config.update(executor="ray", ray={"address": ray_cluster.get_runtime_context().gcs_address, "num_workers": 2})
    config_path.write_text(yaml.safe_dump(config))
    log, out = tmp_path / "ray.log", tmp_path / "run"
    command = [sys.executable, str(RUNNER), str(config_path), str(out), str(log)]
    rng = random.Random(3)
    kills = 0
    for _ in range(2):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = calls(log)
        deadline = time.monotonic() + 120
        # kill once this driver's workers have made a few calls, at a random moment after that
        while process.poll() is None and calls(log) < started + 8 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(rng.uniform(0.5, 4.0))
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait()
        time.sleep(3)  # the killed driver's actors are stopped by Ray once it notices the driver is gone
    subprocess.run(command, check=True, capture_output=True)
    assert kills >= 1
    assert (out / "dataset.jsonl").read_bytes() == (tmp_path / "ref" / "dataset.jsonl").read_bytes()
    # nothing redone beyond the shards in flight at each kill (two workers, at most one batch of 4 each)
    assert calls(log) <= calls(reference_log) + 8 * kills
    ids = [r["id"] for r in RunStore(out).iter_records("answers")]
    assert len(ids) == len(set(ids))


def test_without_ray_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if it were not installed
    with pytest.raises(RayNotInstalled, match=r"pip install 'synthllm\[ray\]'"):
        RayExecutor(make_config())


def stage_files(run_folder: Path, stage: str) -> dict[str, bytes]:
    """Every output and rejects file of a stage (the rejects hold the raw replies), by name."""
    folder = run_folder / "stages" / stage
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl"))}


@needs_ray
@pytest.mark.model
def test_embedded_model_on_ray_gives_the_local_results(tmp_path, ray_cluster):
    from synthllm.llm.embedded import TransformersBackend

    # one torch thread in both runs: the same kernels, so bit-identical greedy replies
    config = make_config(input={"limit": 2}, llm={"backend": "embedded", "threads": 1, "batch_size": 4},
                         concepts={"max_tokens": 24, "max_document_chars": 600}, level1={"max_tokens": 48},
                         level2={"enabled": False}, level3={"enabled": False}, answers={"max_tokens": 24},
                         ray={"num_workers": 1})
    import torch

    threads = torch.get_num_threads()
    backend = TransformersBackend(batch_size=4, threads=1)
    try:
        local = run(config, tmp_path / "local", backend)
    finally:
        backend.close()
        torch.set_num_threads(threads)  # the backend set it for the whole test process
    ray_manifest = run(on_ray(config, tmp_path / "ray-cache.sqlite3"), tmp_path / "ray")  # workers use make_backend
    for stage in ("concepts", "level1", "answers"):
        assert ray_manifest["stages"][stage]["this_run"]["model_calls"] == local["stages"][stage]["model_calls"]
        assert stage_files(tmp_path / "ray", stage) == stage_files(tmp_path / "local", stage)
    assert (tmp_path / "ray" / "dataset.jsonl").read_bytes() == (tmp_path / "local" / "dataset.jsonl").read_bytes()
    assert local["stages"]["level1"]["in"] == 2
