"""A real run folder from the real pipeline with the scripted backend, for the readers' tests.

The report, the dataset card and the push command read run folders; a
hand-built folder lets their tests drift from what the pipeline writes (it hid
that the report read fields curation never wrote). This one is made by
:class:`synthllm.Pipeline`: 10 OpenStax sample documents plus copies of two of
them under new ids (so dedup removes rows) and a one-item benchmark file
holding a question the scripted model asks (so decontamination removes a row).
About 4 s on the reference machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from scripted import level1_reply, respond
from testdata import REPO

SAMPLE = REPO / "src" / "synthllm" / "data" / "openstax_sample.jsonl"
LEAK_BENCHMARK = "leakbench"
DUPLICATED = 2


def leaked_question(document_text: str) -> str:
    """The first Level-1 question the scripted model asks about a document."""
    return re.search(r"Question: (.*)", level1_reply(document_text)).group(1).strip()


def build_scripted_run(root: Path, *, documents: int = 10) -> Path:
    """Run the whole pipeline (no filter, no report) into ``root / "run"``; returns the run folder."""
    from synthllm import Pipeline, load_config
    from synthllm.llm.scripted import ScriptedBackend

    root.mkdir(parents=True, exist_ok=True)
    with open(SAMPLE, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle][:documents]
    copies = [dict(record, id=f"copy-of-{i}") for i, record in enumerate(records[:DUPLICATED])]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records + copies), encoding="utf-8")
    benchmark = root / "leakbench.jsonl"
    benchmark.write_text(json.dumps({"id": "leak-1", "question": leaked_question(records[4]["text"])}) + "\n",
                         encoding="utf-8")
    config = load_config(None, {
        "input": {"path": str(corpus)}, "shard_size": 4, "filter": {"enabled": False},
        "level3": {"max_walks": 8}, "cache_path": str(root / "responses.sqlite3"),
        "decontamination": {"use_shared_benchmarks": False,
                            "benchmarks": [{"name": LEAK_BENCHMARK, "path": str(benchmark), "fields": ["question"]}]},
    })
    pipeline = Pipeline(config, root / "run", backend=ScriptedBackend(respond), show_progress=False)
    try:
        pipeline.run()
    finally:
        pipeline.close()
    return root / "run"
