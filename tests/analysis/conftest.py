"""Fixtures of the analysis tests: a small run folder built from real shared text."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from testdata import GSM8K_TRAIN, MATH_DOCS, SHARED_DATA as SHARED, read_jsonl  # noqa: E402,F401


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def build_run_folder(root: Path) -> Path:
    """Write a run folder in the pipeline's format: 8 textbook documents as anchor
    data, GSM8K training problems standing in for generated samples (4 per
    document and level for Level-1/2, 3 per document pair for Level-3), and
    quality and coverage files."""
    documents = read_jsonl(MATH_DOCS, 8)
    problems = read_jsonl(GSM8K_TRAIN, 120)
    _write_jsonl(root / "stages" / "documents" / "part-00000.jsonl",
                 [{"id": d["id"], "text": d["text"]} for d in documents])
    rows, cursor = [], 0

    def take(level: int, sources: list[str], walk: list[str] | None) -> None:
        nonlocal cursor
        problem = problems[cursor]
        cursor += 1
        rows.append({"id": f"q{cursor:04d}", "level": level, "question": problem["question"],
                     "answer": problem["answer"],
                     "messages": [{"role": "user", "content": problem["question"]},
                                  {"role": "assistant", "content": problem["answer"]}],
                     "concepts": ["ratio", "addition"], "source_doc_ids": sources, "walk": walk,
                     "model": "fixture", "prompt_version": "v1", "seed": 0})

    for level in (1, 2):
        for document in documents:
            for _ in range(4):
                take(level, [document["id"]], None)
    for first, second in zip(documents[::2], documents[1::2]):
        for _ in range(3):
            take(3, [first["id"], second["id"]], ["topic:algebra", "kc:ratio", "kc:sum"])
    removed = [dict(problems[cursor + i], id=f"r{i:03d}", level=1) for i in range(12)]
    _write_jsonl(root / "dataset.jsonl", rows)
    _write_jsonl(root / "quality" / "dedup.jsonl",
                 [dict(r, duplicate_of=rows[i]["id"]) for i, r in enumerate(removed[:8])])
    _write_jsonl(root / "quality" / "decontam.jsonl", [dict(r, benchmark="gsm8k") for r in removed[8:]])
    (root / "quality" / "filter.json").write_text(json.dumps({"scored": 8, "kept": 8, "threshold": 6.5}))
    (root / "graph").mkdir(parents=True, exist_ok=True)
    (root / "graph" / "coverage.json").write_text(json.dumps({
        "walks": 20,
        "topics": {"total": 10, "used": 7, "share": 0.7, "gini": 0.31},
        "concepts": {"total": 60, "used": 25, "share": 0.4167, "gini": 0.55,
                     "most_used": [{"name": "ratio", "walks": 6}]},
    }))
    stage = lambda n_in, n_out: {"in": n_in, "ok": n_out, "out": n_out, "unsuitable": 0,  # noqa: E731
                                 "unparsable": max(0, n_in - n_out), "failed": 0, "prompt_tokens": 100 * n_in,
                                 "completion_tokens": 50 * n_out}
    manifest = {"config": {"seed": 0}, "versions": {"synthllm": "test"}, "dataset_rows": len(rows),
                "stages": {"documents": stage(10, 8), "level1": stage(8, 32), "level2": stage(8, 32),
                           "level3": stage(4, 12), "answers": stage(88, 88), "dedup": stage(88, 80),
                           "decontam": stage(80, 76)}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="session", autouse=True)
def one_blas_thread():
    """One BLAS and torch thread: on a shared two-core machine extra threads only contend."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory) -> Path:
    """A fixture run folder (skips when the shared data is missing)."""
    if not (MATH_DOCS.is_file() and GSM8K_TRAIN.is_file()):
        pytest.skip(f"shared data missing under {SHARED}")
    return build_run_folder(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def report_no_lm(run_folder, tmp_path_factory):
    """(report dict, output folder) of ``write_report(..., lm=False)`` on the fixture run."""
    from synthllm.analysis import write_report

    out = tmp_path_factory.mktemp("report")
    return write_report(run_folder, lm=False, out_dir=out), out
