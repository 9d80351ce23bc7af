"""The steps of a run, declared once: everything else is derived from this list.

:data:`STEPS` says, for each step, its name, what it is (``read``, ``model``
stage, ``reduce``), the steps it reads, its config section(s), and how its
counts must add up. From it the pipeline derives the run order and
``--until``, the step sub-commands, the fingerprints that decide what a
changed setting redoes, the reconciliation of counts, what a stopped run
records, and the versions written into the manifest. A new generator is one
file in ``stages/`` (``build``/``parse``), one template in ``prompts/`` and one
:class:`Step` here.

The functions below are the steps' bodies; each takes the running
:class:`~synthllm.pipeline.Pipeline` (its store, config, executor) and
returns the step's counts. Per-shard work goes through the executor, so every
step runs locally or on Ray alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .errors import InputError
from .io import ReadStats, read_documents
from .llm.base import Sampling
from .progress import console, stage_progress
from .stages.answers import AnswerQuestions
from .stages.base import ModelStage
from .stages.concepts import ExtractConcepts
from .stages.level1 import Level1Questions
from .stages.level2 import Level2Questions
from .stages.level3 import Level3Questions
from .stages.records import stable_id
from .executors import Shard
from .store import empty_counts

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config
    from .pipeline import Pipeline

#: in the declarations below: the documents the generators read (the filter's output when it runs)
CORPUS = "corpus"
#: ... and every question step of the plan (the model steps with a ``level``)
QUESTIONS = "questions"
MODEL_BALANCE = ("ok", "unsuitable", "unparsable", "failed")


@dataclass(frozen=True)
class Step:
    """One step of a run.

    Attributes
    ----------
    name : the run folder's ``stages/<name>`` and the manifest key.
    kind : ``read`` (the corpus), ``model`` (a model stage over shards) or ``reduce`` (a global step).
    reads : the steps whose records it takes (:data:`CORPUS` = filter or documents; :data:`QUESTIONS`
        = every question step of the plan).
    sections : config sections whose fields enter its fingerprint (``fields`` narrows them).
    run : the body; returns the step's counts.
    stage : for model steps, builds the stage from the config.
    balance : counts that must add up to its ``in``.
    flows : ``(part, ((step, count), ...))``: ``part``'s ``in`` equals the sum of those counts.
    level : the question level, for question steps (``generate --level``).
    whole_input : a reduce over everything upstream produced (graph, walks, filter): it waits until its
        upstream finished, since its committed output would not be redone when the rest arrives.
    command : whether ``synthllm NAME --out DIR`` runs up to this step.
    enabled : whether the config (and the requested levels) include it.
    help : one line for ``synthllm steps`` and the step's command.
    """

    name: str
    kind: str
    reads: tuple[str, ...]
    run: Callable[["Pipeline"], dict]
    sections: tuple[str, ...] = ()
    fields: tuple[str, ...] | None = None
    stage: Callable[["Config"], ModelStage] | None = None
    balance: tuple[str, ...] = MODEL_BALANCE
    flows: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    level: int | None = None
    whole_input: bool = False
    command: bool = False
    enabled: Callable[..., bool] = lambda config, levels=(1, 2, 3): True
    help: str = ""


def _sampling(section, seed: int) -> Sampling:
    return Sampling(max_tokens=section.max_tokens, temperature=section.temperature, top_p=section.top_p, seed=seed,
                    presence_penalty=section.presence_penalty, frequency_penalty=section.frequency_penalty)


# -- bodies --------------------------------------------------------------------------------
def read_corpus(p: "Pipeline") -> dict:
    """Stream the corpus into document shards (malformed lines reported, skipped and counted)."""
    cfg = p.config.input
    if cfg.path is None:
        raise InputError("input.path is not set: name a corpus file or folder in the config")
    stats, size, batch, index = ReadStats(), p.config.shard_size, [], 0

    def commit(index: int, docs: list[dict]) -> None:
        n = len(docs)
        p.store.commit_once("documents", f"part-{index:05d}", lambda: (
            p.texts.add(docs) or (docs, [], {**empty_counts(), "in": n, "ok": n, "out": n})))

    with stage_progress("documents", cfg.limit, p.show_progress) as progress:
        for doc in read_documents(cfg.path, cfg.format, cfg.text_field, cfg.id_field, cfg.limit, cfg.min_chars,
                                  stats, on_problem=lambda msg: console.print(f"[yellow]skipped[/] {msg}")):
            batch.append(doc)
            progress.advance(1)
            if len(batch) == size:
                commit(index, batch)
                index, batch = index + 1, []
        if batch:
            commit(index, batch)
    if stats.yielded == 0:
        raise InputError(f"{cfg.path}: no usable documents (read {stats.read}; skipped {stats.skipped})")
    return {**empty_counts(), "in": stats.read, "ok": stats.yielded, "out": stats.yielded,
            "skipped": sum(stats.skipped.values()), "skipped_by_reason": stats.skipped, "problems": stats.problems}


def filter_corpus(p: "Pipeline") -> dict:
    """Stage 1: rate a sample, fit the scorer on its embeddings, keep documents scoring above the threshold.

    Dropped documents go to the shard's rejects with kind ``filtered`` and
    their score. With fewer than ``min_ratings`` usable ratings the scorer
    cannot be trusted: every document is kept and the manifest says why.
    """
    from .quality import DomainScorer, load_ratings
    from .stages.filter import ScoreShard, embed_shard
    from .stages.rate import RateDocuments

    cfg, store = p.config.filter, p.store
    ids_by_shard = {name: [d["id"] for d in store.read_shard("documents", name)] for name in store.shards("documents")}
    if cfg.ratings_path is not None:
        ratings = load_ratings(cfg.ratings_path)
    else:
        stage = RateDocuments(_sampling(cfg, p.config.seed), cfg.prompt_version, cfg.domain, cfg.max_document_chars)
        every_id = [doc_id for ids in ids_by_shard.values() for doc_id in ids]
        sample = set(random.Random(p.config.seed).sample(every_id, min(cfg.sample_size, len(every_id))))
        rate = p.run_model(stage, document_sample(p, ids_by_shard, sample))
        if rate["this_run"]["pending"] or rate["this_run"]["stopped"]:  # not finished: nothing to fit yet
            return {**empty_counts(), "parts": {"rate": rate}, "this_run": rate["this_run"]}
        ratings = {r["id"]: r["rating"] for r in store.iter_records("rate")}
    rated_shards = document_sample(p, ids_by_shard, ratings.keys())
    rated = [doc_id for shard in rated_shards for doc_id in shard.ids]
    summary = {**empty_counts(), "threshold": cfg.threshold, "ratings": len(rated)}
    if cfg.ratings_path is None:
        summary["parts"] = {"rate": rate}
    scorer = None
    if len(rated) >= cfg.min_ratings:
        with console.status("filter: embedding the rated documents ..."):
            embeddings = p.executor.map(embed_shard, [s.load for s in rated_shards])
        scorer = DomainScorer(random_state=p.config.seed).fit(np.vstack(embeddings), [ratings[i] for i in rated])
        summary["scorer_cv"] = scorer.cv_report
    else:
        summary["applied"] = False
        summary["reason"] = f"only {len(rated)} usable ratings (min_ratings {cfg.min_ratings}): every document kept"
        console.print(f"[yellow]filter: {summary['reason']}[/]")
    shards = p.shards_of("documents")
    with stage_progress("filter", sum(s.size for s in shards), p.show_progress) as progress:
        todo = []
        for shard in shards:
            if store.is_committed("filter", shard.name):
                progress.skip(shard.size)
            else:
                todo.append(shard)
        p.executor.map(ScoreShard(str(store.root), scorer, cfg.threshold), [(s.name, s.load) for s in todo],
                       on_result=lambda index, _counts: progress.advance(todo[index].size))
    counts = store.stage_counts("filter")
    summary.update({key: counts[key] for key in ("in", "out", "removed")})
    summary["kept_share"] = round(summary["out"] / summary["in"], 4) if summary["in"] else None
    store.write_json("quality/filter.json", summary)
    return summary


def document_sample(p: "Pipeline", ids_by_shard: dict[str, list[str]], chosen) -> list[Shard]:
    """The documents whose ids are in ``chosen``, as shards named after their document shards."""
    store, shards = p.store, []
    for name, ids in ids_by_shard.items():
        mine = [doc_id for doc_id in ids if doc_id in chosen]
        if mine:
            wanted = frozenset(mine)
            shards.append(Shard(name, lambda name=name, wanted=wanted: [
                d for d in store.read_shard("documents", name) if d["id"] in wanted], len(mine), mine))
    return shards


def model_step(name: str, source: str, transform=None) -> Callable[["Pipeline"], dict]:
    """The body of a model step: its stage over ``source``'s shards (``transform`` adds what the prompt needs)."""

    def run(p: "Pipeline") -> dict:
        return p.run_model(p.steps[name].stage(p.config), p.shards_of(p.resolve(source), transform and transform(p)))

    return run


def with_document_text(p: "Pipeline"):
    texts = p.texts
    return lambda _shard, concepts: [{**c, "text": texts.get(c["doc_id"])} for c in concepts]


def with_reference_texts(p: "Pipeline"):
    texts = p.texts
    return lambda _shard, walks: [{**w, "references": [{**r, "text": texts.get(r["doc_id"])} for r in w["references"]]}
                                  for w in walks]


def answer_questions(p: "Pipeline") -> dict:
    sources = p.expand(QUESTIONS)
    shards = [shard for source in sources for shard in p.shards_of(source, prefix=f"{source}-")]
    return {**p.run_model(p.steps["answers"].stage(p.config), shards), "sources": sources}


def build_graph(p: "Pipeline") -> dict:
    """The corpus-wide concept graph, from every concept record (saved under ``graph/``)."""
    from .graph import ConceptGraphBuilder

    builder = ConceptGraphBuilder()
    for record in p.store.iter_records("concepts"):
        builder.add_document(record["doc_id"], [(t["topic"], t["concepts"]) for t in record["topics"]])
    if builder.n_documents == 0:
        console.print("[yellow]level3: no document has parsed concepts, so there is no concept graph to walk[/]")
        return {"in": 0, "out": 0, "documents": 0, "topics": 0, "concepts": 0}
    graph = builder.build()
    graph.save(p.store.root / "graph")
    return {"in": builder.n_documents, "out": builder.n_documents, "documents": builder.n_documents,
            "topics": graph.n_topics, "concepts": graph.n_concepts}


def sample_walks(p: "Pipeline") -> dict:
    """Seeded walks, their concepts grouped by topic and their top-k reference documents, as shards.

    Walks that reach no key concept (a topic without concepts) are counted as
    ``dropped``, never lost silently: ``in = out + dropped``.
    """
    from .graph import ConceptGraph, sample_walks as walk
    from .graph.walks import select_walk_indices

    cfg, store = p.config.level3, p.store
    if not p.manifest["stages"].get("graph", {}).get("out"):  # no document had concepts: nothing to walk
        return {**empty_counts(), "dropped": 0}
    graph = ConceptGraph.load(store.root / "graph")
    requested = len(select_walk_indices(graph.n_topics, cfg.epochs, p.config.seed, cfg.max_walks))
    walks = walk(graph, epochs=cfg.epochs, seed=p.config.seed, max_walks=cfg.max_walks, novelty=cfg.novelty)
    size = p.config.shard_size
    for index in range(0, len(walks), size):
        part = walks[index:index + size]
        store.commit_once("walks", f"part-{index // size:05d}", lambda part=part: (
            [walk_record(graph, w, cfg.reference_documents, p.config.seed) for w in part], [],
            {**empty_counts(), "in": len(part), "ok": len(part), "out": len(part)}))
    store.write_json("graph/coverage.json", graph.coverage(walks))
    dropped = requested - len(walks)
    if dropped:
        console.print(f"[yellow]walks: {dropped} of {requested} walks reached no key concept (a topic without "
                      "concepts) and were dropped[/]")
    return {**store.stage_counts("walks"), "in": requested, "dropped": dropped}


def walk_record(graph, walk, k: int, seed: int) -> dict:
    references = graph.top_k_documents(walk.nodes, k=k)
    return {"id": stable_id("w", seed, walk.walk_index, walk.nodes), "walk": walk.nodes,
            "walk_detail": walk.to_dict(), "groups": group_walk_concepts(graph, walk),
            "references": [{"doc_id": doc_id, "score": score} for doc_id, score in references]}


def group_walk_concepts(graph, walk) -> list[dict]:
    """The walk's key concepts grouped under its topics, for the Level-3 prompt.

    A concept goes under the walk topic it co-occurs with most often in the
    corpus (the first walk topic on ties or when it co-occurs with none).
    """
    topic_ids = [graph.topic_index[topic] for topic in walk.topics]
    groups = {topic: [] for topic in walk.topics}
    for concept in walk.concepts:
        node = graph.concept_index[concept]
        counts = [graph.counts[topic, node] for topic in topic_ids]
        best = max(range(len(counts)), key=lambda i: (counts[i], -i))
        groups[walk.topics[best]].append(concept)
    return [{"topic": topic, "concepts": concepts} for topic, concepts in groups.items() if concepts]


def curate(p: "Pipeline") -> dict:
    """Dedup, decontaminate and write the dataset files (see :mod:`synthllm.curate`)."""
    from .curate import curate_dataset

    return curate_dataset(p.store, p.config, p.executor)


# -- the list ----------------------------------------------------------------------------
def _level_stage(cls, section: str, **kwargs):
    def make(config: "Config") -> ModelStage:
        cfg = getattr(config, section)
        return cls(_sampling(cfg, config.seed), cfg.prompt_version, **{k: getattr(cfg, v) for k, v in kwargs.items()})

    return make


def _on(section: str, level: int | None = None):
    return lambda config, levels=(1, 2, 3): getattr(config, section).enabled and (level is None or level in levels)


STEPS: tuple[Step, ...] = (
    Step("documents", "read", (), read_corpus, sections=("input",), balance=("out", "skipped"), command=True,
         help="Read the corpus into the run folder's document shards (reports malformed lines)."),
    Step("filter", "reduce", ("documents",), filter_corpus, sections=("filter",), balance=("out", "removed"),
         flows=(("filter", (("documents", "out"),)),), enabled=_on("filter"), whole_input=True, command=True,
         help="Rate a sample with the LLM, fit the domain scorer, keep the documents above the threshold."),
    Step("concepts", "model", (CORPUS,), model_step("concepts", CORPUS), sections=("concepts",),
         stage=_level_stage(ExtractConcepts, "concepts", max_document_chars="max_document_chars",
                            grammar_version="grammar_version", topics="topics", concepts="concepts_per_topic"),
         flows=(("concepts", ((CORPUS, "out"),)),), enabled=_on("concepts"), command=True,
         help="Extract level, subject, topics and key concepts of every document."),
    Step("level1", "model", (CORPUS,), model_step("level1", CORPUS), sections=("level1",), level=1,
         stage=_level_stage(Level1Questions, "level1", max_questions="questions_per_document",
                            max_source_chars="max_document_chars", grammar_version="grammar_version",
                            allow_unsuitable="allow_unsuitable", min_questions="min_questions_per_document"),
         flows=(("level1", ((CORPUS, "out"),)),), enabled=_on("level1", 1),
         help="Level-1 questions from one document."),
    Step("level2", "model", ("concepts",), model_step("level2", "concepts", with_document_text),
         sections=("level2",), level=2,
         stage=_level_stage(Level2Questions, "level2", max_questions="questions_per_document",
                            max_source_chars="max_document_chars", grammar_version="grammar_version",
                            min_questions="min_questions_per_document"),
         flows=(("level2", (("concepts", "ok"),)),), enabled=_on("level2", 2),
         help="Level-2 questions recombining the concepts of one document."),
    Step("graph", "reduce", ("concepts",), build_graph, level=3, balance=("out",), whole_input=True,
         enabled=_on("level3", 3), help="The corpus-wide concept graph (topics and key concepts, co-occurrence)."),
    Step("walks", "reduce", ("graph",), sample_walks, sections=("level3",), level=3, balance=("out", "dropped"),
         fields=("epochs", "max_walks", "novelty", "reference_documents"), whole_input=True,
         enabled=_on("level3", 3), help="Seeded random walks over the graph, each with its top-k reference documents."),
    Step("level3", "model", ("walks",), model_step("level3", "walks", with_reference_texts), sections=("level3",),
         level=3, stage=_level_stage(Level3Questions, "level3", max_questions="questions_per_walk",
                                     max_source_chars="max_reference_chars", grammar_version="grammar_version"),
         flows=(("level3", (("walks", "out"),)),), enabled=_on("level3", 3),
         help="Level-3 questions from each walk's concepts and its two reference documents."),
    Step("answers", "model", (QUESTIONS,), answer_questions, sections=("answers",),
         stage=_level_stage(AnswerQuestions, "answers", samples="samples", grammar_version="grammar_version"),
         flows=(("answers", ((QUESTIONS, "out"),)),), enabled=_on("answers"),
         help="Answer every generated question."),
    Step("curate", "reduce", ("answers",), curate, sections=("dedup", "decontamination"), balance=("out", "removed"),
         flows=(("dedup", (("answers", "out"),)), ("decontam", (("dedup", "out"),))), enabled=_on("answers"),
         help="Dedup, decontaminate and write dataset.parquet / dataset.jsonl."),
)
STEP = {step.name: step for step in STEPS}


def plan(config: "Config", levels=(1, 2, 3), until: str | None = None, steps=None) -> list[Step]:
    """The steps a run does, in order: those of ``steps`` (default :data:`STEPS`) the config enables
    (for ``levels``), up to ``until``."""
    steps = [step for step in (steps or STEPS) if step.enabled(config, tuple(levels))]
    names = [step.name for step in steps]
    if until is not None:
        if until not in names:
            raise InputError(f"step {until!r} is not enabled in this config (enabled: {', '.join(names)})")
        steps = steps[:names.index(until) + 1]
    return steps
