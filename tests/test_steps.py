"""Steps as data: the declared list drives the run; regression tests for the bugs of the hand-wired pipeline."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from scripted import respond
from synthllm import Pipeline
from synthllm.errors import RunFolderBusy, StorageError
from synthllm.llm.scripted import ScriptedBackend
from synthllm.prompts import available_versions
from synthllm.stages.level1 import Level1Questions
from synthllm.stages.records import stable_id
from synthllm.steps import CORPUS, STEPS, Step, model_step
from synthllm.store import RunStore
from test_pipeline import make_config, run


def files(folder, name="dataset.jsonl"):
    return (folder / name).read_bytes()


def test_a_crash_inside_the_walks_commit_loop_resumes_to_every_walk(tmp_path, monkeypatch):
    """Before: 'any walks shard exists' meant done, so a crash after the first walks shard lost the rest."""
    config = make_config(tmp_path, shard_size=2)
    reference = run(config, tmp_path / "ref", ScriptedBackend(respond))
    assert reference["stages"]["walks"]["out"] > 2  # more than one walks shard

    original = RunStore.commit_shard

    def crash_after_first_walks_shard(self, stage, shard, *args):
        original(self, stage, shard, *args)
        if stage == "walks":
            raise KeyboardInterrupt  # as if killed here

    monkeypatch.setattr(RunStore, "commit_shard", crash_after_first_walks_shard)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path / "run", ScriptedBackend(respond))
    monkeypatch.setattr(RunStore, "commit_shard", original)
    assert len(RunStore(tmp_path / "run").shards("walks")) == 1
    manifest = run(config, tmp_path / "run", ScriptedBackend(respond))
    assert manifest["stages"]["walks"]["out"] == reference["stages"]["walks"]["out"]
    assert manifest["stages"]["level3"]["out"] == reference["stages"]["level3"]["out"]
    assert (tmp_path / "run" / "graph" / "coverage.json").exists()
    assert files(tmp_path / "run") == files(tmp_path / "ref")
    assert manifest["reconciliation"]["ok"]


def test_empty_step_markers_left_by_a_crash_are_not_fatal(tmp_path):
    """Before: _read.json / _summary.json / _fingerprint were plain writes; an empty one broke every later run."""
    config = make_config(tmp_path)
    run(config, tmp_path / "run", ScriptedBackend(respond))
    reference = files(tmp_path / "run")
    markers = [p for p in (tmp_path / "run" / "stages").rglob("_*") if p.is_file()]
    assert {p.name for p in markers} >= {"_done.json", "_fingerprint"}
    for marker in markers:
        marker.write_text("")  # what a crash between truncate and write leaves
    again = ScriptedBackend(respond)
    manifest = run(config, tmp_path / "run", again)
    assert again.calls == 0 and manifest["reconciliation"]["ok"]
    assert files(tmp_path / "run") == reference


def test_markers_and_manifest_are_written_atomically(tmp_path, monkeypatch):
    """A failure in the middle of a write leaves the old file whole and no temporary file behind."""
    store = RunStore(tmp_path / "run")
    store.mark_done("level1", {"in": 1})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(StorageError, match="No space left on device"):
        store.mark_done("level1", {"in": 2})
    assert store.done("level1") == {"in": 1}
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_editing_a_template_in_place_redoes_its_step_and_only_downstream(tmp_path, monkeypatch):
    """Before: fingerprints held the template version name, so an edit under the same name changed nothing."""
    import synthllm.prompts as prompts

    config = make_config(tmp_path)
    run(config, tmp_path / "run", ScriptedBackend(respond))
    original = prompts.load_template

    def edited(name, version=None):
        template = original(name, version)
        if name == "level2":
            return template.__class__(template.name, template.version, template.system,
                                      template.user + "\nBe concise.", template.example)
        return template

    monkeypatch.setattr(prompts, "load_template", edited)
    manifest = run(config, tmp_path / "run", ScriptedBackend(respond))
    stages = manifest["stages"]
    assert stages["level2"]["prompt_version"] == f"v{available_versions('level2')[-1]}"  # same version name ...
    assert stages["level2"]["this_run"]["model_calls"] == stages["level2"]["in"]  # ... new text: asked again
    assert stages["level1"]["this_run"]["model_calls"] == 0 and stages["concepts"]["this_run"]["model_calls"] == 0
    assert stages["answers"]["this_run"]["resumed_records"] == 0  # downstream of level2 redone (from the cache)


def test_a_new_parser_version_redoes_the_step(tmp_path, monkeypatch):
    from synthllm.stages.level1 import Level1Questions

    config = make_config(tmp_path)
    run(config, tmp_path / "run", ScriptedBackend(respond))
    monkeypatch.setattr(Level1Questions, "parser_version", 2)
    manifest = run(config, tmp_path / "run", ScriptedBackend(respond))
    assert manifest["stages"]["level1"]["this_run"]["resumed_records"] == 0
    assert manifest["stages"]["level2"]["this_run"]["resumed_records"] == manifest["stages"]["level2"]["in"]


ISOLATED = ("<level>high school</level>\n<subject>Mathematics</subject>\n<topic>\n1. Isolated things\n</topic>\n"
            "<key_concept>\n1. Isolated things\n1.1. ?\n</key_concept>")


def one_topic_without_concepts(messages):
    """``respond``, except that one document's only topic gets a concept that canonicalises to nothing."""
    user = messages[-1]["content"]
    if "describe what a student learns" in user and "fraction" in user.lower():
        return ISOLATED
    return respond(messages)


def test_walks_that_reach_no_concept_are_counted_not_lost(tmp_path, capsys):
    """Before: a topic with no concepts silently lost its walks (max_walks=40 gave 36, no count, no message)."""
    config = make_config(tmp_path, level3={"max_walks": None, "epochs": 3})
    manifest = run(config, tmp_path / "run", ScriptedBackend(one_topic_without_concepts))
    walks = manifest["stages"]["walks"]
    assert walks["dropped"] > 0 and walks["in"] == walks["out"] + walks["dropped"]
    assert "reached no key concept" in capsys.readouterr().err
    assert manifest["reconciliation"]["ok"]


LOCK_HOLDER = """
import sys, time
from synthllm.store import RunStore
store = RunStore(sys.argv[1]); store.lock(); print("locked", flush=True); time.sleep(120)
"""


def test_a_second_run_on_a_folder_in_use_stops_at_once_and_a_stale_lock_does_not_block(tmp_path):
    """Before: two runs on one --out both did all the work and could mix seeds."""
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        backend = ScriptedBackend(respond)
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"):
            run(make_config(tmp_path), out, backend)
        assert backend.calls == 0 and not RunStore(out).shards("documents")
        # the command line says it in one line, exit status 2
        config = tmp_path / "run.yaml"
        config.write_text(json.dumps(make_config(tmp_path).model_dump(mode="json")))
        result = subprocess.run([sys.executable, "-m", "synthllm.cli", "run", str(config), "--out", str(out)],
                                capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"in use by another synthllm process (pid {holder.pid})" in result.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without cleaning up: its lock went with it
    manifest = run(make_config(tmp_path), out, ScriptedBackend(respond))
    assert manifest["reconciliation"]["ok"] and manifest["dataset_rows"] > 0


class ToyQuestions(Level1Questions):
    """A new generator: questions about a document's first sentence only (reuses the Level-1 template)."""

    name = "toy"

    def build(self, record):
        return super().build({**record, "text": record["text"].split(". ")[0] + "."})

    def parse(self, record, texts):
        return [{**q, "id": stable_id("toy", q["id"]), "generator": "toy"} for q in super().parse(record, texts)]


def test_a_declared_toy_step_runs_through_the_real_pipeline(tmp_path):
    from synthllm.llm.base import Sampling

    toy = Step("toy", "model", (CORPUS,), model_step("toy", CORPUS), level=1,
               stage=lambda config: ToyQuestions(Sampling(max_tokens=64, seed=config.seed), max_questions=2),
               flows=(("toy", ((CORPUS, "out"),)),))
    steps = (*STEPS[:-2], toy, *STEPS[-2:])  # before answers and curation
    config = make_config(tmp_path)
    pipeline = Pipeline(config, tmp_path / "run", backend=ScriptedBackend(respond), show_progress=False, steps=steps)
    try:
        manifest = pipeline.run()
    finally:
        pipeline.close()
    stages = manifest["stages"]
    assert stages["toy"]["in"] == 10 and stages["toy"]["out"] > 0
    assert stages["answers"]["in"] == sum(stages[s]["out"] for s in ("level1", "level2", "level3", "toy"))
    assert manifest["reconciliation"] == {"ok": True, "problems": []}
    rows = [json.loads(line) for line in (tmp_path / "run" / "dataset.jsonl").read_text().splitlines()]
    assert any(r["id"] in {q["id"] for q in RunStore(tmp_path / "run").iter_records("toy")} for r in rows)
    assert "toy" in manifest["plan"] and manifest["versions"]["prompts"]["level1"] == f"v{available_versions('level1')[-1]}"


def test_no_import_cycle_through_pipeline_curation_or_executors():
    """Imports inside functions count too: the executors, curation and llm must not reach back to the pipeline."""
    import ast
    from pathlib import Path

    import synthllm

    root = Path(synthllm.__file__).parent
    graph = {}
    for path in root.rglob("*.py"):
        module = ".".join(("synthllm", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        targets = set()
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: never imported at run time
                continue
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names] + [base]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            targets.update(n for n in names if n.startswith("synthllm"))
        graph[module] = targets

    def reaches(start, goal, seen=None):
        """The import path from ``start`` to ``goal``, or ``None``."""
        seen = seen if seen is not None else set()
        for target in graph.get(start, ()):
            # a module, or a name imported from one; never the package root (every import runs it)
            candidate = target if target in graph else target.rsplit(".", 1)[0]
            if candidate == "synthllm":
                continue
            if candidate == goal:
                return [start, goal]
            if candidate in graph and candidate not in seen:
                seen.add(candidate)
                path = reaches(candidate, goal, seen)
                if path:
                    return [start, *path]
        return None

    for module in ("synthllm.pipeline", "synthllm.curate", "synthllm.executors", "synthllm.executors.local",
                   "synthllm.executors.ray_executor", "synthllm.executors.ray_budget", "synthllm.steps"):
        assert not reaches(module, module), f"import cycle: {' -> '.join(reaches(module, module))}"
    for low in ("synthllm.executors", "synthllm.executors.ray_budget", "synthllm.curate", "synthllm.llm.factory"):
        assert not reaches(low, "synthllm.pipeline"), f"{' -> '.join(reaches(low, 'synthllm.pipeline'))}"


def test_temp_files_orphaned_by_a_kill_are_removed_by_the_next_run(tmp_path):
    """Before: `.manifest.json.*.tmp` files left by a kill stayed forever."""
    config = make_config(tmp_path)
    run(config, tmp_path / "run", ScriptedBackend(respond))
    orphans = [tmp_path / "run" / ".manifest.json.abc123.tmp", tmp_path / "run" / "stages" / "level1" / ".x.jsonl.q.tmp"]
    for orphan in orphans:
        orphan.write_text("half a file")
    run(config, tmp_path / "run", ScriptedBackend(respond))
    assert not any(orphan.exists() for orphan in orphans)


def test_a_backend_handed_to_the_pipeline_stays_open_for_its_owner(tmp_path):
    """A backend the caller built (a loaded model shared by several runs) is the caller's to close."""

    class Counting(ScriptedBackend):
        closed = 0

        def close(self):
            self.closed += 1

    backend = Counting(respond)
    run(make_config(tmp_path), tmp_path / "a", backend)
    run(make_config(tmp_path), tmp_path / "b", backend)
    assert backend.closed == 0
