"""Constrained decoding on the embedded backend: format validity per stage, grounding, bf16 vs fp32.

On the same documents and the demo's settings (``synthllm.demo.demo_config``), each model stage
(concepts, Level-1, Level-2, answers) is run twice on one loaded model: with its reply grammar
enforced (xgrammar) and without (the grammar stripped from the requests; the tolerant parsers read
both). Reported per stage: replies parsed, questions, completion tokens, wall and CPU seconds. Level-2
gets the concept lists of the constrained concept run in both conditions, so that only its own
format differs; answers get the constrained Level-1 questions. Level-1 grounding (source document in
the top 3 of the documents by MiniLM similarity) is reported for the prompt versions given.

``--throughput`` instead times the same Level-1 prompts (unconstrained, greedy) with a bfloat16 and a
float32 copy of the model, one after the other in this process, and prints output tokens/s and the
ratio.

    python bench/bench_constrained.py --docs 20 --threads 1
    python bench/bench_constrained.py --docs 20 --threads 1 --throughput
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from synthllm.analysis.grounding import source_ranks
from synthllm.demo import demo_config
from synthllm.io import iter_jsonl
from synthllm.llm.base import Sampling
from synthllm.llm.embedded import TransformersBackend
from synthllm.stages.answers import AnswerQuestions
from synthllm.stages.base import Unparsable, Unsuitable
from synthllm.stages.concepts import ExtractConcepts
from synthllm.stages.level1 import Level1Questions
from synthllm.stages.level2 import Level2Questions


def _sampling(section, seed=0) -> Sampling:
    return Sampling(max_tokens=section.max_tokens, temperature=section.temperature, top_p=section.top_p, seed=seed)


def run_stage(backend, stage, records, constrained: bool) -> tuple[dict, list]:
    requests = []
    for record in records:
        for request in stage.requests(record):
            requests.append(request if constrained else dataclasses.replace(request, grammar=None))
    wall, cpu = time.perf_counter(), time.process_time()
    replies = backend.generate(requests)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    outputs, counts = [], {"in": len(records), "ok": 0, "unparsable": 0, "unsuitable": 0, "failed": 0, "out": 0}
    for record, reply in zip(records, replies):
        if not reply.ok:
            counts["failed"] += 1
            outputs.append(None)
            continue
        try:
            produced = stage.parse(record, [reply.text])
        except Unsuitable:
            counts["unsuitable"] += 1
            outputs.append(None)
        except Unparsable:
            counts["unparsable"] += 1
            outputs.append(None)
        else:
            counts["ok"] += 1
            counts["out"] += len(produced)
            outputs.append(produced)
    tokens = sum(r.completion_tokens for r in replies)
    counts.update(tokens=tokens, wall_s=round(wall, 1), cpu_s=round(cpu, 1),
                  tok_per_s=round(tokens / wall, 1) if wall else None)
    return counts, outputs


def grounding_share(docs, outputs, k=3) -> float | None:
    questions, sources = [], []
    for produced in outputs:
        for q in produced or []:
            questions.append(q["question"])
            sources.append(q["source_doc_ids"][0])
    ranks = source_ranks(questions, sources, [d["id"] for d in docs], [d["text"] for d in docs])
    return round(sum(r <= k for r in ranks) / len(ranks), 3) if ranks else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--corpus", default="../shared/data/corpus/openstax_math.jsonl")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--level1-versions", default="v3,v4", help="prompt versions compared for Level-1 grounding")
    parser.add_argument("--throughput", action="store_true", help="time bf16 vs fp32 instead")
    parser.add_argument("--skip", default="", help="comma-separated runs to skip, e.g. 'concepts=False,answers'")
    args = parser.parse_args()
    docs = [d for _, d in zip(range(args.docs), iter_jsonl(args.corpus))]
    config = demo_config(args.docs)
    if args.throughput:
        cfg = config.level1
        stage = Level1Questions(Sampling(max_tokens=cfg.max_tokens, temperature=0.0), "v4",
                                cfg.questions_per_document, cfg.max_document_chars)
        requests = [dataclasses.replace(r, grammar=None) for d in docs for r in stage.requests(d)]
        results = {}
        for dtype in ("bfloat16", "float32"):
            backend = TransformersBackend(batch_size=len(requests), threads=args.threads, dtype=dtype,
                                          constrained=False)
            backend.generate(requests[:2])  # warm-up
            wall, cpu = time.perf_counter(), time.process_time()
            replies = backend.generate(requests)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            tokens = sum(r.completion_tokens for r in replies)
            results[dtype] = {"tokens": tokens, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                              "tok_per_s": round(tokens / wall, 1), "tok_per_cpu_s": round(tokens / cpu, 1)}
            print(dtype, json.dumps(results[dtype]), flush=True)
            backend.close()
        print("bf16 / fp32 tokens per second:",
              round(results["bfloat16"]["tok_per_s"] / results["float32"]["tok_per_s"], 2),
              "; per CPU second:",
              round(results["bfloat16"]["tok_per_cpu_s"] / results["float32"]["tok_per_cpu_s"], 2))
        return
    backend = TransformersBackend(batch_size=32, threads=args.threads, dtype=args.dtype)
    print(json.dumps(backend.describe()), flush=True)
    report = {}
    concepts = ExtractConcepts(_sampling(config.concepts), None, config.concepts.max_document_chars)
    concept_records = None
    skip = set(filter(None, args.skip.split(",")))
    for constrained in (False, True):
        if f"concepts={constrained}" in skip:
            continue
        counts, outputs = run_stage(backend, concepts, docs, constrained)
        report[f"concepts constrained={constrained}"] = counts
        print(f"concepts constrained={constrained}", json.dumps(counts), flush=True)
        if constrained:
            concept_records = [{**o[0], "text": d["text"]} for d, o in zip(docs, outputs) if o]
    cfg = config.level1
    level1_questions = []
    for version in args.level1_versions.split(","):
        stage = Level1Questions(_sampling(cfg), version, cfg.questions_per_document, cfg.max_document_chars,
                                allow_unsuitable=cfg.allow_unsuitable)
        for constrained in (False, True):
            if f"level1 {version}={constrained}" in skip:
                continue
            counts, outputs = run_stage(backend, stage, docs, constrained)
            counts["questions_per_doc"] = round(counts["out"] / len(docs), 2)
            counts["grounding_top3"] = grounding_share(docs, outputs)
            key = f"level1 {version} constrained={constrained}"
            report[key] = counts
            print(key, json.dumps(counts), flush=True)
            if constrained and version == args.level1_versions.split(",")[-1]:
                level1_questions = [q for o in outputs for q in (o or [])]
    cfg = config.level2
    if concept_records is None:  # the constrained concept run was skipped
        args.skip += ",level2=False,level2=True"
        skip = set(filter(None, args.skip.split(",")))
    stage = Level2Questions(_sampling(cfg), None, cfg.questions_per_document, cfg.max_document_chars)
    for constrained in (False, True):
        if f"level2={constrained}" in skip:
            continue
        counts, outputs = run_stage(backend, stage, concept_records, constrained)
        counts["docs_with_questions"] = sum(1 for o in outputs if o)
        key = f"level2 constrained={constrained}"
        report[key] = counts
        print(key, json.dumps(counts), flush=True)
    cfg = config.answers
    if "answers" in skip:
        print(json.dumps(report, indent=1))
        return
    stage = AnswerQuestions(_sampling(cfg), None)
    questions = level1_questions[: args.docs]
    for constrained in (False, True):
        counts, outputs = run_stage(backend, stage, questions, constrained)
        counts["with_final_answer"] = sum(1 for o in outputs if o and o[0]["final_answer"])
        key = f"answers constrained={constrained}"
        report[key] = counts
        print(key, json.dumps(counts), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
