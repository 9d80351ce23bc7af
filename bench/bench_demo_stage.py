"""One model stage of the demo on its 20 documents, with overrides of that stage's config section.

Prints the stage's counts and, for a question level, the questions per document, the distinct
questions per document (case-insensitive) and the grounding share (own document in the top 3 of
the 20 by MiniLM similarity) of the generated questions, before dedup; then the first questions.
The per-change table of bench/RESULTS.md ("The demo on this machine") comes from runs of it:

    OMP_NUM_THREADS=1 python bench/bench_demo_stage.py /tmp/l1 level1 \
        '{"prompt_version": "v6", "frequency_penalty": 1.0, "min_questions_per_document": 3}'
    OMP_NUM_THREADS=1 python bench/bench_demo_stage.py /tmp/c concepts '{}'

Level-2 and Level-3 need the concepts: run ``concepts`` into the folder first (it resumes).
"""
import sys, json, time
from pathlib import Path
from synthllm.demo import demo_config
from synthllm.pipeline import Pipeline
from synthllm.store import RunStore
from synthllm.analysis.grounding import grounding

out, level = Path(sys.argv[1]), sys.argv[2]
over = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
cfg = demo_config(20)
cfg = cfg.model_copy(update={level: getattr(cfg, level).model_copy(update=over)})
if level == "level1":  # Level-1 reads documents only: skip the concept extraction
    cfg = cfg.model_copy(update={"concepts": cfg.concepts.model_copy(update={"enabled": False})})
t = time.time()
m = Pipeline(cfg, out).run(until=level)
store = RunStore(out)
if level == "concepts":
    print(json.dumps({"over": over, "secs": round(time.time() - t), "stage": m["stages"].get(level)}))
    sys.exit(0)
rows = [dict(r, level=int(level[-1]), source_doc_ids=r.get("source_doc_ids") or [r.get("doc_id")]) for r in store.iter_records(level)]
g = grounding(out, rows=rows)
uniq = {}
for r in rows: uniq.setdefault(r["source_doc_ids"][0], set()).add(r["question"].strip().lower())
print(json.dumps({"over": over, "secs": round(time.time() - t), "stage": m["stages"].get(level), "questions": len(rows), "docs": len(uniq),
                  "distinct_per_doc": round(sum(map(len, uniq.values())) / max(1, len(uniq)), 2),
                  "grounding": g["levels"][level[-1]]["share"]}))
for r in rows[:60]:
    print(r["source_doc_ids"][0][-12:], "|", r["question"][:150])
