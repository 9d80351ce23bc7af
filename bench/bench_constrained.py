"""Constrained decoding: format validity per stage, grounding, bf16 vs fp32; embedded or through vLLM.

On the same documents and the demo's settings (``synthllm.demo.demo_config``; each stage built by
the pipeline's own step, so prompt and grammar versions, list bounds and sampling are the demo's),
each model stage (concepts, Level-1, Level-2, Level-3, answers) is run twice on one backend: with
its reply grammar enforced and without (the grammar stripped from the requests; the tolerant
parsers read both). ``--backend embedded`` (default) enforces it with xgrammar in
``model.generate``; ``--backend vllm`` starts synthllm's managed vLLM server once
(``llm.backend: vllm``, ``--enforce-eager``), which sends the grammar as vLLM's
``structured_outputs``. Reported per stage: replies parsed, unparsable, unsuitable, failed, replies
cut by ``max_tokens``, questions, completion tokens, wall and CPU seconds (with vLLM, CPU seconds
of this process plus those of the server's process group). Level-2 and Level-3 get the concept
lists of the constrained concept run in both conditions (Level-3 its walks over their graph), so
that only their own format differs; answers get the constrained Level-1 questions. Level-1
grounding (source document in the top 3 of the documents by MiniLM similarity) is reported for
the prompt versions given (default: the config's, i.e. the newest).

``--throughput`` instead times the same Level-1 prompts (unconstrained, greedy) with a bfloat16 and a
float32 copy of the model, one after the other in this process, and prints output tokens/s and the
ratio.

    python bench/bench_constrained.py --docs 20 --threads 1
    python bench/bench_constrained.py --docs 20 --backend vllm
    python bench/bench_constrained.py --docs 20 --threads 1 --throughput
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from synthllm.analysis.grounding import source_ranks
from synthllm.demo import demo_config
from synthllm.io import iter_jsonl
from synthllm.llm.base import Sampling
from synthllm.llm.embedded import TransformersBackend
from synthllm.llm.factory import make_backend
from synthllm.stages.base import Unparsable, Unsuitable
from synthllm.stages.level1 import Level1Questions
from synthllm.steps import STEP, walk_record


def server_cpu_seconds(backend) -> float:
    """CPU seconds so far of the managed vLLM server's process group (API server, engine core, and
    children they waited for); 0 for a backend without a server."""
    server = getattr(backend, "server", None)
    if server is None or server.process is None:
        return 0.0
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == server.process.pid:  # pgrp; fields[11:15] = utime stime cutime cstime
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_stage(backend, stage, records, constrained: bool) -> tuple[dict, list]:
    requests = []
    for record in records:
        for request in stage.requests(record):
            requests.append(request if constrained else dataclasses.replace(request, grammar=None))
    wall, cpu = time.perf_counter(), time.process_time() + server_cpu_seconds(backend)
    replies = backend.generate(requests)
    wall, cpu = time.perf_counter() - wall, time.process_time() + server_cpu_seconds(backend) - cpu
    outputs, counts = [], {"in": len(records), "ok": 0, "unparsable": 0, "unsuitable": 0, "failed": 0, "out": 0,
                           "cut": sum(r.finish_reason == "length" for r in replies)}
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


def bench_config(args):
    """The demo's config for ``args.docs`` documents, its ``llm`` section set to the backend asked for."""
    config = demo_config(args.docs)
    llm = {"threads": args.threads, "dtype": args.dtype}
    if args.backend == "vllm":
        # one server for every stage; eager mode starts in ~35 s instead of ~140 s (idle machine);
        # a whole stage is one burst of requests, so no request may time out behind the others
        llm.update(backend="vllm", vllm_args=["--enforce-eager"], max_concurrency=args.concurrency,
                   timeout=3600.0)
        os.environ.setdefault("VLLM_CACHE_ROOT", str(Path(tempfile.gettempdir()) / "synthllm-bench-vllm-cache"))
    return config.model_copy(update={"llm": config.llm.model_copy(update=llm)})


def with_section(config, section: str, **update):
    """``config`` with fields of one section replaced."""
    return config.model_copy(update={section: getattr(config, section).model_copy(update=update)})


def level3_records(concept_records: list[dict], config, texts: dict[str, str]) -> list[dict]:
    """The Level-3 step's input: the config's walks over the graph of ``concept_records``, with reference texts."""
    from synthllm.graph import ConceptGraphBuilder, sample_walks

    builder = ConceptGraphBuilder()
    for record in concept_records:
        builder.add_document(record["doc_id"], [(t["topic"], t["concepts"]) for t in record["topics"]])
    graph, cfg = builder.build(), config.level3
    walks = sample_walks(graph, epochs=cfg.epochs, seed=config.seed, max_walks=cfg.max_walks, novelty=cfg.novelty)
    records = [walk_record(graph, w, cfg.reference_documents, config.seed) for w in walks]
    return [{**w, "references": [{**r, "text": texts[r["doc_id"]]} for r in w["references"]]} for w in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--corpus", default="../shared/data/corpus/openstax_math.jsonl")
    parser.add_argument("--backend", choices=("embedded", "vllm"), default="embedded",
                        help="embedded transformers (xgrammar) or synthllm's managed vLLM server (structured_outputs)")
    parser.add_argument("--concurrency", type=int, default=32, help="vLLM: requests in flight")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--level1-versions", default="",
                        help="prompt versions compared for Level-1 grounding (default: the config's, the newest)")
    parser.add_argument("--throughput", action="store_true", help="time bf16 vs fp32 instead")
    parser.add_argument("--skip", default="", help="comma-separated runs to skip, e.g. 'concepts=False,answers,level3'")
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
    config = bench_config(args)
    started = time.perf_counter()
    backend = make_backend(config)
    print(f"{args.backend} backend ready in {time.perf_counter() - started:.0f} s:", json.dumps(backend.describe()),
          flush=True)
    try:
        report = run_all(args, config, backend, docs)
    finally:
        backend.close()
    print(json.dumps(report, indent=1))


def run_all(args, config, backend, docs) -> dict:
    """Every stage with and without its grammar on ``backend``; returns the counts by run name."""
    report = {}
    skip = set(filter(None, args.skip.split(",")))

    def record(key: str, stage, counts: dict) -> None:
        grammar = stage.grammar.version if stage.grammar is not None else None
        counts = {"prompt": stage.prompt_version, "grammar": grammar, **counts}
        report[key] = counts
        print(key, json.dumps(counts), flush=True)

    concepts = STEP["concepts"].stage(config)
    concept_records = None
    for constrained in (False, True):
        if f"concepts={constrained}" in skip:
            continue
        counts, outputs = run_stage(backend, concepts, docs, constrained)
        record(f"concepts constrained={constrained}", concepts, counts)
        if constrained:
            concept_records = [{**o[0], "text": d["text"]} for d, o in zip(docs, outputs) if o]
    level1_questions = []
    versions = args.level1_versions.split(",") if args.level1_versions else [config.level1.prompt_version]
    for version in versions:
        stage = STEP["level1"].stage(with_section(config, "level1", prompt_version=version))
        for constrained in (False, True):
            if f"level1 {version}={constrained}" in skip or f"level1={constrained}" in skip:
                continue
            counts, outputs = run_stage(backend, stage, docs, constrained)
            counts["questions_per_doc"] = round(counts["out"] / len(docs), 2)
            counts["grounding_top3"] = grounding_share(docs, outputs)
            record(f"level1 {stage.prompt_version} constrained={constrained}", stage, counts)
            if constrained and version == versions[-1]:
                level1_questions = [q for o in outputs for q in (o or [])]
    if concept_records is None:  # the constrained concept run was skipped
        skip |= {"level2", "level3"}
    if "level2" not in skip:
        stage = STEP["level2"].stage(config)
        for constrained in (False, True):
            if f"level2={constrained}" in skip:
                continue
            counts, outputs = run_stage(backend, stage, concept_records, constrained)
            counts["docs_with_questions"] = sum(1 for o in outputs if o)
            counts["questions_per_doc"] = round(counts["out"] / len(docs), 2)
            record(f"level2 constrained={constrained}", stage, counts)
    if "level3" not in skip:
        stage = STEP["level3"].stage(config)
        walks = level3_records(concept_records, config, {d["id"]: d["text"] for d in docs})
        for constrained in (False, True):
            if f"level3={constrained}" in skip:
                continue
            counts, outputs = run_stage(backend, stage, walks, constrained)
            record(f"level3 constrained={constrained}", stage, counts)
    if "answers" not in skip and level1_questions:
        stage = STEP["answers"].stage(config)
        questions = level1_questions[: args.docs]
        for constrained in (False, True):
            if f"answers={constrained}" in skip:
                continue
            counts, outputs = run_stage(backend, stage, questions, constrained)
            counts["with_final_answer"] = sum(1 for o in outputs if o and o[0]["final_answer"])
            record(f"answers constrained={constrained}", stage, counts)
    return report


if __name__ == "__main__":
    main()
