"""What ``manifest.json`` says about a run: fingerprints, versions, summary lines, reconciliation.

The reconciliation is derived from the step declarations in
:mod:`synthllm.steps`: each step's ``balance`` (the counts that add up to its
``in``) and ``flows`` (whose counts its ``in`` equals). A flow into a step is
checked when that step finished, or when the step is a reduce
over every committed record (filter, curation), which holds even in a
stopped run; a stopped model step is checked only for its own balance.
"""

from __future__ import annotations

import hashlib
import json
import platform

from .steps import CORPUS, MODEL_BALANCE, QUESTIONS, STEPS

#: balance of the parts a step records besides itself (the filter's ratings, curation's two checks)
PART_BALANCE = {"rate": MODEL_BALANCE, "dedup": ("out", "removed"), "decontam": ("out", "removed")}


def digest(*parts) -> str:
    """A short, stable hash of JSON-able ``parts`` (fingerprints)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def summary_line(stage: str, counts: dict) -> str:
    """``✓ stage  in N, out M, ...`` for the console."""
    parts = [f"in {counts.get('in', 0)}", f"out {counts.get('out', 0)}"]
    for key in ("unsuitable", "unparsable", "failed", "removed", "skipped", "dropped"):
        if counts.get(key):
            parts.append(f"{key} {counts[key]}")
    this_run = counts.get("this_run")
    if this_run and "model_calls" in this_run:
        parts.append(f"this run: model calls {this_run['model_calls']}, cached {this_run['cached']}, "
                     f"already done {this_run['resumed_records']}")
        if this_run.get("pending"):
            parts.append(f"[yellow]pending {this_run['pending']}[/]")
    mark = "[green]✓[/]" if counts.get("complete", True) else "[yellow]…[/]"
    return f"{mark} {stage:<10} " + ", ".join(parts)


def reconcile(manifest: dict, steps=STEPS) -> dict:
    """Check that the manifest's counts add up; returns ``{"ok": bool, "problems": [...]}``.

    ``steps`` are the declarations the run used (default :data:`~synthllm.steps.STEPS`).
    """
    declared = {step.name: step for step in steps}
    stages = manifest.get("stages", {})
    plan = manifest.get("plan") or [name for name in declared if name in stages or name == "curate"]
    problems = []
    for name, counts in stages.items():
        balance = PART_BALANCE.get(name) or (declared[name].balance if name in declared else MODEL_BALANCE)
        total = sum(counts.get(key, 0) or 0 for key in balance)
        if counts.get("in") != total:
            problems.append(f"{name}: in {counts.get('in')} != {' + '.join(balance)} ({total})")

    def expand(name: str) -> list[str]:
        if name == QUESTIONS:
            return [s for s in plan if declared[s].kind == "model" and declared[s].level is not None]
        return [("filter" if "filter" in plan else "documents") if name == CORPUS else name]

    for step in steps:
        if step.name not in plan:
            continue
        for part, sources in step.flows:
            sources = [(name, key) for src, key in sources for name in expand(src) if name in stages]
            if part not in stages or not sources:
                continue
            if step.kind != "reduce" and not stages[part].get("complete", True):
                continue  # a stopped step saw only part of what its upstream produced
            total = sum(stages[src].get(key, 0) or 0 for src, key in sources)
            if stages[part].get("in") != total:
                names = " + ".join(f"{src}.{key}" for src, key in sources)
                problems.append(f"{names} ({total}) != {part}.in ({stages[part].get('in')})")
    if "decontam" in stages and "dataset_rows" in manifest and manifest["dataset_rows"] != stages["decontam"].get("out"):
        problems.append(f"decontam.out ({stages['decontam'].get('out')}) != dataset rows ({manifest['dataset_rows']})")
    return {"ok": not problems, "problems": problems}


def versions(stages: dict) -> dict:
    """Python, synthllm, key packages, and the prompt template version of every model stage that ran."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    found = {"python": platform.python_version(), "synthllm": __version__,
             "prompts": {counts["template"]: counts["prompt_version"] for counts in stages.values()
                         if counts.get("template") and counts.get("prompt_version")}}
    for package in ("torch", "transformers", "openai", "pyarrow", "xgrammar"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:  # not installed: nothing to record
            continue
    return found
