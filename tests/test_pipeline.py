"""The whole pipeline with the scripted in-process backend: outputs, counts, resume."""

import json

import pyarrow.parquet as pq
import pytest

from scripted import respond
from synthllm import Pipeline, load_config, reconcile
from synthllm.llm.scripted import ScriptedBackend
from synthllm.store import RunStore

SAMPLE = "src/synthllm/data/openstax_sample.jsonl"


def make_config(tmp_path, **overrides):
    from testdata import REPO

    base = {"input": {"path": str(REPO / SAMPLE), "limit": 10}, "shard_size": 4, "filter": {"enabled": False},
            "level3": {"max_walks": 8}, "decontamination": {"use_shared_benchmarks": False}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return load_config(None, base)


def run(config, out, backend):
    pipeline = Pipeline(config, out, backend=backend, show_progress=False)
    try:
        return pipeline.run()
    finally:
        pipeline.close()


def test_end_to_end_dataset_has_all_levels_and_counts_reconcile(tmp_path):
    backend = ScriptedBackend(respond)
    manifest = run(make_config(tmp_path), tmp_path / "run", backend)
    assert manifest["reconciliation"] == {"ok": True, "problems": []}
    table = pq.read_table(tmp_path / "run" / "dataset.parquet").to_pylist()
    lines = (tmp_path / "run" / "dataset.jsonl").read_text().splitlines()
    assert len(table) == len(lines) == manifest["dataset_rows"] > 0
    assert {row["level"] for row in table} == {1, 2, 3}
    assert len({row["id"] for row in table}) == len(table)
    for row in table:
        assert row["messages"] == [{"role": "user", "content": row["question"]},
                                   {"role": "assistant", "content": row["answer"]}]
        assert row["model"] == "scripted" and row["prompt_version"] == "v6" and row["seed"] == 0
        if row["level"] == 3:
            assert len(row["walk"]) >= 4 and len(row["source_doc_ids"]) == 2
        else:
            assert row["walk"] is None and len(row["source_doc_ids"]) == 1
        if row["level"] > 1:
            assert row["concepts"]
    stages = manifest["stages"]
    assert stages["answers"]["in"] == sum(stages[s]["out"] for s in ("level1", "level2", "level3"))
    assert backend.calls == sum(stages[s]["model_calls"] for s in ("concepts", "level1", "level2", "level3", "answers"))
    assert manifest["versions"]["prompts"]["level1"] == "v6"
    assert (tmp_path / "run" / "graph" / "coverage.json").exists()


def test_rerun_makes_no_model_calls_and_gives_identical_output(tmp_path):
    config = make_config(tmp_path)
    run(config, tmp_path / "run", ScriptedBackend(respond))
    first = (tmp_path / "run" / "dataset.jsonl").read_bytes()
    again = ScriptedBackend(respond)
    manifest = run(config, tmp_path / "run", again)
    assert again.calls == 0
    assert (tmp_path / "run" / "dataset.jsonl").read_bytes() == first
    assert manifest["reconciliation"]["ok"]


def test_a_finished_run_is_replayed_without_building_a_backend(tmp_path):
    config = make_config(tmp_path)
    first = run(config, tmp_path / "run", ScriptedBackend(respond))
    # no backend given: one would be built from config.llm (the embedded model) on first use
    pipeline = Pipeline(config, tmp_path / "run", show_progress=False)
    try:
        manifest = pipeline.run()
        assert pipeline.executor._backend is None
    finally:
        pipeline.close()
    assert manifest["reconciliation"]["ok"] and manifest["model"] == first["model"]
    assert manifest["dataset_rows"] == first["dataset_rows"]


def test_a_fresh_folder_replays_the_shared_cache(tmp_path):
    config = make_config(tmp_path)
    run(config, tmp_path / "a", ScriptedBackend(respond))
    again = ScriptedBackend(respond)
    run(config, tmp_path / "b", again)
    assert again.calls == 0
    assert (tmp_path / "a" / "dataset.jsonl").read_bytes() == (tmp_path / "b" / "dataset.jsonl").read_bytes()


class Interrupting(ScriptedBackend):
    """Raises KeyboardInterrupt (as Ctrl-C would) when the n-th request arrives."""

    def __init__(self, after):
        super().__init__(respond, batch_size=3)
        self.after = after

    def generate(self, requests):
        if self.calls + len(requests) > self.after:
            raise KeyboardInterrupt
        return super().generate(requests)


@pytest.mark.parametrize("after", [5, 23, 40])
def test_interrupted_run_resumes_to_the_same_dataset_without_repeating_calls(tmp_path, after):
    config = make_config(tmp_path)
    reference = ScriptedBackend(respond)
    run(config, tmp_path / "ref", reference)
    config.cache_path = tmp_path / "own-cache.sqlite3"  # not the reference run's replies
    interrupted = Interrupting(after)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path / "run", interrupted)
    resumed = ScriptedBackend(respond)
    manifest = run(config, tmp_path / "run", resumed)
    assert (tmp_path / "run" / "dataset.jsonl").read_bytes() == (tmp_path / "ref" / "dataset.jsonl").read_bytes()
    # every reply from before the interruption was reused
    assert interrupted.calls + resumed.calls == reference.calls
    assert manifest["reconciliation"]["ok"]


def flaky(messages):
    """Breaks some replies on purpose: a server error, unparsable text, the unsuitable sentinel."""
    user = messages[-1]["content"]
    if "exam questions about the document" in user and "whole numbers" in user.lower():
        return "NOT_SUITABLE_FOR_QUESTIONS"
    if "describe what a student learns" in user and "fraction" in user.lower():
        return "I cannot do that."
    if "Solve the problem" in user and "slope" in user.lower():
        raise ConnectionError("server went away")
    return respond(messages)


def test_unsuitable_unparsable_and_failed_are_kept_with_reasons_and_counted(tmp_path):
    config = make_config(tmp_path, input={"limit": 30})
    manifest = run(config, tmp_path / "run", ScriptedBackend(flaky))
    stages = manifest["stages"]
    assert manifest["reconciliation"] == {"ok": True, "problems": []}
    assert stages["level1"]["unsuitable"] > 0 and stages["concepts"]["unparsable"] > 0
    assert stages["answers"]["failed"] > 0
    store = RunStore(tmp_path / "run")
    rejects = {kind: [r for s in ("concepts", "level1", "answers") for r in store.iter_rejects(s) if r["kind"] == kind]
               for kind in ("unsuitable", "unparsable", "failed")}
    assert len(rejects["unsuitable"]) == stages["level1"]["unsuitable"]
    assert rejects["unparsable"][0]["raw"] == ["I cannot do that."]
    assert "server went away" in rejects["failed"][0]["reason"]
    # a failed reply is not cached: the next run asks again
    again = ScriptedBackend(respond)
    store.reset_stage("answers")
    run(config, tmp_path / "run", again)
    assert again.calls == stages["answers"]["failed"]


def test_changed_settings_redo_the_stage_and_downstream_only(tmp_path):
    config = make_config(tmp_path)
    run(config, tmp_path / "run", ScriptedBackend(respond))
    config.level1.questions_per_document = 1
    again = ScriptedBackend(respond)
    manifest = run(config, tmp_path / "run", again)
    stages = manifest["stages"]
    assert stages["level1"]["this_run"]["model_calls"] == stages["level1"]["in"]  # new prompt: asked again
    assert stages["concepts"]["this_run"] == {"model_calls": 0, "cached": 0, "resumed_records": 10, "pending": 0,
                                              "stopped": False}
    assert stages["level2"]["this_run"]["model_calls"] == 0
    assert stages["level1"]["out"] == stages["level1"]["ok"]  # one question per document now
    assert manifest["reconciliation"]["ok"]


def test_reconcile_reports_mismatches():
    manifest = {"stages": {"documents": {"in": 3, "out": 3, "skipped": 0},
                           "level1": {"in": 3, "ok": 1, "unsuitable": 1, "unparsable": 0, "failed": 0, "out": 2}}}
    result = reconcile(manifest)
    assert not result["ok"] and "level1: in 3" in result["problems"][0]


def test_each_level_can_run_alone(tmp_path):
    config = make_config(tmp_path)
    pipeline = Pipeline(config, tmp_path / "run", backend=ScriptedBackend(respond), show_progress=False)
    pipeline.run(until="level2", levels=(2,))
    pipeline.close()
    store = RunStore(tmp_path / "run")
    assert store.shards("level2") and not store.shards("level1") and not store.shards("answers")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["reconciliation"]["ok"]


class StopsAfter(Pipeline):
    """A pipeline whose time budget runs out once ``shards`` answer shards are committed (a deterministic clock)."""

    def __init__(self, *args, shards, **kwargs):
        super().__init__(*args, **kwargs)
        self.shards = shards

    def _out_of_time(self):
        return len(self.store.shards("answers")) >= self.shards


def test_time_budget_ends_with_a_valid_partial_dataset_and_the_rerun_completes_it(tmp_path):
    config = make_config(tmp_path)
    run(config, tmp_path / "ref", ScriptedBackend(respond))
    config.cache_path = tmp_path / "own.sqlite3"
    # enough checks to get into the answers stage, not through it
    pipeline = StopsAfter(config, tmp_path / "run", backend=ScriptedBackend(respond), show_progress=False, shards=2)
    manifest = pipeline.run()
    pipeline.close()
    assert manifest["partial"] == {"reason": "time budget spent"}
    assert manifest["reconciliation"]["ok"]
    assert 0 < manifest["dataset_rows"] < manifest["stages"]["answers"]["in"] + 1
    partial_rows = (tmp_path / "run" / "dataset.jsonl").read_text().splitlines()
    assert len(partial_rows) == manifest["dataset_rows"]
    final = run(config, tmp_path / "run", ScriptedBackend(respond))
    assert "partial" not in final and final["reconciliation"]["ok"]
    assert (tmp_path / "run" / "dataset.jsonl").read_bytes() == (tmp_path / "ref" / "dataset.jsonl").read_bytes()


def test_stop_before_any_answer_still_writes_a_valid_empty_dataset(tmp_path):
    pipeline = StopsAfter(make_config(tmp_path), tmp_path / "run", backend=ScriptedBackend(respond),
                          show_progress=False, shards=0)
    manifest = pipeline.run()
    pipeline.close()
    assert manifest["partial"] and manifest["dataset_rows"] == 0 and manifest["reconciliation"]["ok"]
    assert (tmp_path / "run" / "dataset.parquet").exists()


NON_MATH = [
    "The colonial war shaped the history of the young republic. The president argued with congress about "
    "the war, and the history books record how the colonial assemblies answered the president. " * 2,
    "Philosophy asks what a good life is. The history of philosophy is a history of arguments about virtue, "
    "and every philosophy student reads the history of these debates about the war of ideas. " * 2,
]


def test_domain_filter_drops_off_topic_documents_and_counts_them(tmp_path):
    from testdata import REPO

    corpus = tmp_path / "mixed.jsonl"
    math_lines = (REPO / SAMPLE).read_text().splitlines()[:12]
    off_topic = [json.dumps({"id": f"hist-{i}-{j}", "text": text + f" Part {j}."})
                 for i, text in enumerate(NON_MATH) for j in range(4)]
    corpus.write_text("\n".join(math_lines + off_topic) + "\n")
    config = make_config(tmp_path, input={"path": str(corpus), "limit": None}, filter={"enabled": True},
                         level2={"enabled": False}, level3={"enabled": False})
    manifest = run(config, tmp_path / "run", ScriptedBackend(respond))
    stages = manifest["stages"]
    assert manifest["reconciliation"] == {"ok": True, "problems": []}
    assert stages["rate"]["in"] == 20 and stages["filter"]["in"] == 20
    assert stages["filter"]["removed"] == 8 and stages["filter"]["out"] == 12 == stages["concepts"]["in"]
    assert stages["filter"]["scorer_cv"]["n"] == 20
    dropped = list(RunStore(tmp_path / "run").iter_rejects("filter"))
    assert sorted(r["id"] for r in dropped) == sorted(json.loads(line)["id"] for line in off_topic)
    assert all(r["score"] <= 6.5 for r in dropped)


def test_cost_is_accounted_per_stage_when_the_backend_has_prices(tmp_path):
    backend = ScriptedBackend(respond)
    backend.prices = {"prompt": 2.0, "completion": 10.0}
    manifest = run(make_config(tmp_path, level2={"enabled": False}, level3={"enabled": False}), tmp_path / "run",
                   backend)
    stage = manifest["stages"]["level1"]
    expected = (stage["prompt_tokens"] * 2.0 + stage["completion_tokens"] * 10.0) / 1e6
    assert stage["cost"] > 0 and abs(stage["cost"] - expected) < 1e-12


def test_no_parsable_concepts_means_no_level2_or_level3_but_a_complete_run(tmp_path):
    def no_concepts(messages):
        if "describe what a student learns" in messages[-1]["content"]:
            return "This document is about numbers."
        return respond(messages)

    manifest = run(make_config(tmp_path), tmp_path / "run", ScriptedBackend(no_concepts))
    stages = manifest["stages"]
    assert stages["concepts"]["unparsable"] == stages["concepts"]["in"] == 10
    assert stages["level2"]["in"] == 0 and stages["walks"]["out"] == 0 and stages["level3"]["in"] == 0
    assert manifest["dataset_by_level"]["1"] > 0 and manifest["reconciliation"]["ok"]


def test_a_planted_benchmark_question_is_decontaminated_and_reported(tmp_path, shared_data):
    leak = json.loads((shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()[5])["question"]

    def leaky(messages):
        reply = respond(messages)
        if "exam questions about the document" in messages[-1]["content"] and "whole numbers" in messages[-1]["content"].lower():
            reply += f"\n<Q9>\nQuestion: {leak}\nOrig_tag:<newly_created>\nLevel:<elementary>\n</Q9>"
        return reply

    config = make_config(tmp_path, decontamination={"use_shared_benchmarks": True},
                         level1={"questions_per_document": 3})
    manifest = run(config, tmp_path / "run", ScriptedBackend(leaky))
    assert manifest["stages"]["decontam"]["removed"] >= 1
    assert set(manifest["stages"]["decontam"]["benchmarks"]) >= {"gsm8k"}
    removed = [json.loads(line) for line in (tmp_path / "run" / "quality" / "decontam.jsonl").read_text().splitlines()]
    assert any(r["removed_by"] == "decontam" and r["reason"]["benchmark"] == "gsm8k"
               and r["reason"]["field"] == "question" and r["level"] == 1 for r in removed)
    dataset = (tmp_path / "run" / "dataset.jsonl").read_text()
    assert leak not in dataset and manifest["reconciliation"]["ok"]


def test_a_changed_prefill_redoes_the_stage(tmp_path, monkeypatch):
    from synthllm.stages.level2 import Level2Questions

    config = make_config(tmp_path)
    run(config, tmp_path / "run", ScriptedBackend(respond))
    monkeypatch.setattr(Level2Questions, "prefill", "<Q1>\nSelected Concepts: [")
    manifest = run(config, tmp_path / "run", ScriptedBackend(respond))
    assert manifest["stages"]["level2"]["this_run"]["resumed_records"] == 0
    assert manifest["stages"]["level1"]["this_run"]["resumed_records"] == 10


def test_the_optional_semantic_dedup_pass_runs_in_curation(tmp_path):
    plain = run(make_config(tmp_path), tmp_path / "plain", ScriptedBackend(respond))
    semantic = run(make_config(tmp_path, dedup={"semantic_threshold": 0.9}), tmp_path / "semantic",
                   ScriptedBackend(respond))
    assert semantic["reconciliation"]["ok"]
    removed = RunStore(tmp_path / "semantic").removed("dedup")
    assert semantic["stages"]["dedup"]["removed"] == len(removed) >= plain["stages"]["dedup"]["removed"]
    assert any(r["reason"]["kind"] == "semantic" for r in removed)  # the scripted questions share templates
