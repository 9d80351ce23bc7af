"""Running the declared steps (:mod:`synthllm.steps`) over one run folder.

The pipeline knows no step by name. For each step of the plan it derives a
fingerprint (the step's config sections, the model, its stage's template text
and parser version, the upstream fingerprints, the seed); a changed
fingerprint resets that step, and so, through the upstream fingerprints,
everything downstream of it. Then one resume rule for every step: a step whose
``_done.json`` marker exists (written atomically, only once the step finished
with nothing pending and everything upstream finished) is replayed from its
recorded counts; any other step runs, and its per-shard work skips the shards
already committed. Counts go into ``manifest.json``, whose reconciliation
(:mod:`synthllm.manifest`) is derived from the same declarations.

A run that stops early (time budget, Ctrl-C, a server that stays down) or that
ends with requests pending (failed for a transient reason) still writes a
valid partial dataset from what is answered, records why in ``partial``, and
is finished by running the same command again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .config import Config
from .errors import BackendUnavailable
from .executors import Shard, make_executor
from .llm.base import Backend
from .llm.factory import given_backend
from .manifest import digest, reconcile, summary_line, versions
from .progress import console, stage_progress
from .stages.base import ModelStage
from .steps import CORPUS, QUESTIONS, STEPS, Step, plan
from .store import DocumentTexts, RunStore


class Pipeline:
    """Runs the SynthLLM steps of ``config`` in the run folder ``out``.

    Parameters
    ----------
    config : the validated run configuration.
    out : run folder (created if missing; an existing one is resumed).
    backend : a ready backend (local executor only); by default one is built from ``config.llm`` when needed.
    backend_factory : a picklable zero-argument callable building the backend (any executor).
    cache : the response cache; by default ``config.cache_path`` or the shared default.
    show_progress : draw progress bars (only on a terminal).
    steps : the step declarations (default :data:`~synthllm.steps.STEPS`; add your own generator here).
    """

    def __init__(self, config: Config, out: str | Path, backend: Backend | None = None,
                 backend_factory: Callable[[], Backend] | None = None, cache=None, show_progress: bool = True,
                 steps: tuple[Step, ...] = STEPS):
        self.config = config
        self.declared = tuple(steps)
        self.steps = {step.name: step for step in self.declared}
        self.store = RunStore(out)
        self.executor = make_executor(config, given_backend(backend) if backend is not None else backend_factory, cache,
                                      state_dir=self.store.root / "llm")
        self.show_progress = show_progress
        self.fingerprints: dict[str, str] = {}
        self.manifest = self.store.read_manifest()
        self.manifest["stages"] = {}
        self.planned: list[str] = []
        self._texts: DocumentTexts | None = None
        self._deadline: float | None = None
        self._current: str | None = None
        self._executed: set[str] = set()

    # -- what step bodies use --------------------------------------------------------------
    @property
    def texts(self) -> DocumentTexts:
        if self._texts is None:
            self._texts = DocumentTexts(self.store.root / "documents.sqlite")
        return self._texts

    def resolve(self, name: str) -> str:
        """A step name, with :data:`~synthllm.steps.CORPUS` resolved to the filter when it runs."""
        return ("filter" if "filter" in self.planned else "documents") if name == CORPUS else name

    def expand(self, name: str) -> list[str]:
        """The planned steps a name in ``reads`` stands for (:data:`~synthllm.steps.QUESTIONS`: all question steps)."""
        if name == QUESTIONS:
            return [s for s in self.planned if self.steps[s].kind == "model" and self.steps[s].level is not None]
        return [self.resolve(name)]

    def shards_of(self, stage: str, transform: Callable[[str, list[dict]], list[dict]] | None = None,
                  prefix: str = "") -> list[Shard]:
        """The committed shards of ``stage`` as loaders (which close over the store only: Ray pickles them)."""
        store = self.store

        def loader(name: str):
            return lambda: transform(name, store.read_shard(stage, name)) if transform else store.read_shard(stage, name)

        return [Shard(prefix + name, loader(name), store.shard_counts(stage, name)["out"]) for name in store.shards(stage)]

    def run_model(self, stage: ModelStage, shards: list[Shard]) -> dict:
        """Run a model stage over ``shards`` on the executor; returns its counts (with ``this_run``)."""
        if stage.name != self._current:  # a stage inside a step (the filter's ratings): its own folder
            self.store.set_fingerprint(stage.name, digest(self.fingerprints[self._current], stage.fingerprint_parts()))
        with stage_progress(stage.name, sum(s.size for s in shards), self.show_progress) as progress:
            counts = self.executor.run_model_stage(stage, shards, self.store, progress,
                                                   extra_fields={"seed": self.config.seed}, should_stop=self._out_of_time)
        grammar = stage.grammar.version if stage.grammar is not None else None
        return {**counts, "prompt_version": stage.prompt_version, "template": stage.template_name,
                **({"grammar_version": grammar} if grammar else {})}

    # -- the resume rule -------------------------------------------------------------------
    def fingerprint(self, step: Step) -> str:
        parts: list = [step.name, self.config.seed]
        for section in step.sections:
            data = getattr(self.config, section).model_dump(mode="json")
            parts.append({k: v for k, v in data.items() if step.fields is None or k in step.fields})
        if step.name == "documents":
            parts.append(self.config.shard_size)
        if step.kind == "model" or step.name == "filter":
            parts.append(f"{self.config.llm.backend}:{self.config.llm.model}")
        if step.stage is not None:
            parts.append(step.stage(self.config).fingerprint_parts())
        parts.append([self.fingerprints.get(name) for read in step.reads for name in self.expand(read)])
        return digest(*parts)

    def execute(self, step: Step, finished: set[str]) -> dict:
        """Run (or replay) one step; ``finished`` collects the steps that completed."""
        self._current = step.name
        self._executed.add(step.name)
        self.fingerprints[step.name] = self.fingerprint(step)
        if self.store.set_fingerprint(step.name, self.fingerprints[step.name]):
            console.print(f"[yellow]{step.name}: settings or inputs changed since the last run; redoing it[/]")
        upstream = all(name in finished for read in step.reads for name in self.expand(read) if name in self.planned)
        if step.whole_input and not upstream:
            console.print(f"[yellow]… {step.name:<10} waits for its input to finish (run again)[/]")
            return {"complete": False}
        summary = self.store.done(step.name) if upstream else None
        if summary is not None:  # finished in an earlier run: replay its counts
            for counts in (summary, *summary.get("parts", {}).values()):
                if "this_run" in counts:
                    counts["this_run"] = {"model_calls": 0, "cached": 0, "resumed_records": counts.get("in", 0),
                                          "pending": 0, "stopped": False}
        else:
            summary = step.run(self)
            this_run = summary.get("this_run") or {}
            if upstream and not this_run.get("pending") and not this_run.get("stopped"):
                self.store.mark_done(step.name, summary)
            else:
                summary["complete"] = False
        summary.setdefault("complete", True)
        if summary["complete"]:
            finished.add(step.name)
        self.record(step.name, summary)
        return summary

    def record(self, name: str, summary: dict) -> None:
        summary = {k: v for k, v in summary.items() if v is not None}
        for part, counts in summary.pop("parts", {}).items():
            self.manifest["stages"][part] = {**counts, "complete": summary["complete"]}
            console.print(summary_line(part, counts))
        if name != "curate":
            self.manifest["stages"][name] = {**summary, "fingerprint": self.fingerprints.get(name)}
            console.print(summary_line(name, summary))
        for key in ("dataset_rows", "dataset_by_level"):
            if key in summary:
                self.manifest[key] = summary[key]
        self.save_manifest()

    def save_manifest(self) -> None:
        from . import __version__

        self.manifest.update({
            "synthllm_version": __version__, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": self.config.model_dump(mode="json"), "plan": self.planned,
            "versions": versions(self.manifest["stages"]),
            "model": (self.executor.describe_backend() or {}).get("model") or self.manifest.get(
                "model", f"{self.config.llm.backend}:{self.config.llm.model}"),
        })
        backend = self.executor.describe_backend()
        if backend:
            self.manifest["backend"] = backend
        self.manifest["reconciliation"] = reconcile(self.manifest, self.declared)
        self.store.write_manifest(self.manifest)

    # -- whole runs --------------------------------------------------------------------------
    def run(self, until: str | None = None, levels=(1, 2, 3)) -> dict:
        """Run every enabled step in order (up to and including ``until``); returns the manifest.

        Raises
        ------
        RunFolderBusy : another process is running in this folder.
        KeyboardInterrupt : after recording the partial dataset.
        """
        steps = plan(self.config, levels, until, self.declared)
        self.planned = [step.name for step in steps]
        self.store.lock()
        self._deadline = time.monotonic() + self.config.time_budget if self.config.time_budget else None
        finished: set[str] = set()
        stop, error = None, None
        try:
            for step in steps:
                if self._out_of_time():
                    stop = "time budget spent"
                    break
                if (self.execute(step, finished).get("this_run") or {}).get("stopped"):
                    stop = "time budget spent"
                    break
        except KeyboardInterrupt as exc:
            stop, error = "interrupted", exc
        except BackendUnavailable as exc:  # recorded as the reason of a partial run (the CLI exits 3)
            stop = f"the model backend is unavailable: {exc}"
        pending = {name: counts["this_run"]["pending"] for name, counts in self.manifest["stages"].items()
                   if (counts.get("this_run") or {}).get("pending")}
        if stop is None and not pending:
            self.manifest.pop("partial", None)
            self.save_manifest()
        else:
            self._finish_partial(stop or f"{sum(pending.values())} records pending after transient failures", pending,
                                 finished)
        if error is not None:
            raise error
        return self.manifest

    def _out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _finish_partial(self, reason: str, pending: dict, finished: set[str]) -> None:
        """After a stop: record what the shards hold and write the dataset from what is answered."""
        self.manifest["partial"] = {"reason": reason, **({"pending": pending} if pending else {})}
        for name in self.planned:
            if self.steps[name].kind == "model" and name not in self.manifest["stages"] and self.store.shards(name):
                self.manifest["stages"][name] = {**self.store.stage_counts(name), "complete": False}
        if "curate" in self.planned and "curate" not in self._executed:
            self._deadline = None  # curation of what is answered is quick and always done
            self.execute(self.steps["curate"], finished)
        self.save_manifest()
        console.print(f"[yellow]stopped ({reason}): wrote a partial dataset of {self.manifest.get('dataset_rows', 0)} "
                      "rows; run the same command again to continue[/]")

    def close(self) -> None:
        if self._texts is not None:
            self._texts.close()
        self.executor.close()
        self.store.unlock()
