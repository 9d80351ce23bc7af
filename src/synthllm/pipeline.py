"""The SynthLLM pipeline over one run folder.

Steps, each resumable (committed shards are skipped, model replies are cached):

1. ``documents``  stream the corpus into shards (malformed lines reported and counted)
   ``filter``     (stage 1) LLM ratings of a sample → random forest on embeddings → keep scores > threshold
2. ``concepts``   level, subject, topics and key concepts per document
3. ``level1``     questions from one document
4. ``level2``     questions from a document and its concepts
5. ``graph``      the corpus-wide concept graph (a reduce step over all concepts)
6. ``walks``      seeded random walks; top-k Jaccard reference documents per walk
7. ``level3``     questions from each walk's concepts and references
8. ``answers``    an answer for every question
9. ``curate``     dedup and decontamination, then dataset.parquet / dataset.jsonl

Every step records its counts in ``manifest.json``; :func:`reconcile` checks
that they add up. A step's outputs carry a fingerprint of what produced them
(config section, model, prompt version, upstream fingerprints); when that
changes, the step and everything downstream is redone instead of mixing old
and new records.
"""

from __future__ import annotations

import hashlib
import json
import platform
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from . import __version__
from .config import Config
from .executors import map_items
from .executors.local import run_model_stage
from .io import InputError, ReadStats, read_documents
from .llm.base import Backend, Sampling
from .llm.cache import ResponseCache
from .llm.factory import make_backend
from .progress import console, stage_progress
from .stages.answers import AnswerQuestions
from .stages.base import ModelStage
from .stages.concepts import ExtractConcepts
from .stages.level1 import Level1Questions
from .stages.level2 import Level2Questions
from .stages.level3 import Level3Questions
from .stages.records import stable_id
from .store import RunStore, empty_counts

QUESTION_STAGES = ("level1", "level2", "level3")


def _request_shape(stage: ModelStage) -> list:
    """What a stage's requests depend on besides its config: template version, prefill, stops, grammar."""
    return [stage.prompt_version, stage.prefill, stage.sampling.as_dict(),
            stage.grammar.sha256 if stage.grammar is not None else None]


def _sampling(section, seed: int) -> Sampling:
    return Sampling(max_tokens=section.max_tokens, temperature=section.temperature, top_p=section.top_p, seed=seed)


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class DocumentTexts:
    """id → text of every input document, in an SQLite file of the run (Level-3 needs random access)."""

    def __init__(self, path: Path):
        self.path = path
        self._conn = sqlite3.connect(path)
        self._conn.execute("CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, text TEXT NOT NULL)")

    def __reduce__(self):  # a Ray worker that unpickles it opens its own connection to the same file
        return DocumentTexts, (self.path,)

    def add(self, documents: Iterable[dict]) -> None:
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?)",
                                   ((d["id"], d["text"]) for d in documents))

    def get(self, doc_id: str) -> str:
        row = self._conn.execute("SELECT text FROM docs WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            raise KeyError(doc_id)
        return row[0]

    def close(self) -> None:
        self._conn.close()


@dataclass
class Shard:
    name: str
    load: Callable[[], list[dict]]
    size: int
    ids: list[str] | None = None  # for a sample of documents: the chosen ids, in document order

    def __iter__(self):  # lets a Shard unpack as the executor's (name, load, size)
        return iter((self.name, self.load, self.size))


class Pipeline:
    """Runs the SynthLLM steps of ``config`` in the run folder ``out``.

    Parameters
    ----------
    config : the validated run configuration.
    out : run folder (created if missing; an existing one is resumed).
    backend : a ready backend; by default one is made from ``config.llm`` on first use.
    cache : the response cache; by default ``config.cache_path`` or the shared default.
    show_progress : draw progress bars (only on a terminal).
    """

    def __init__(self, config: Config, out: str | Path, backend: Backend | None = None,
                 cache: ResponseCache | None = None, show_progress: bool = True):
        self.config = config
        self.store = RunStore(out)
        self._backend = backend
        self.cache = cache if cache is not None else ResponseCache(config.cache_path)
        self.show_progress = show_progress
        self.fingerprints: dict[str, str] = {}
        self.manifest = self.store.read_manifest()
        self.manifest.setdefault("stages", {})
        self._texts: DocumentTexts | None = None
        self._deadline: float | None = None

    # -- plumbing ------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        if self._backend is None:
            with console.status(f"loading model {self.config.llm.model} ..."):
                self._backend = make_backend(self.config)
        return self._backend

    @property
    def texts(self) -> DocumentTexts:
        if self._texts is None:
            self._texts = DocumentTexts(self.store.root / "documents.sqlite")
        return self._texts

    def _fingerprint(self, stage: str, *parts) -> bool:
        """Record ``stage``'s fingerprint; reset the stage if it changed. Returns True if it was reset."""
        value = _digest(stage, *parts)
        self.fingerprints[stage] = value
        path = self.store.stage_dir(stage) / "_fingerprint"
        old = path.read_text().strip() if path.exists() else None
        reset = old is not None and old != value
        if reset:
            console.print(f"[yellow]{stage}: settings or inputs changed since the last run; redoing it[/]")
            self.store.reset_stage(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        if old != value:
            path.write_text(value)
        return reset

    def _shards_of(self, stage: str, transform: Callable[[str, list[dict]], list[dict]] | None = None,
                   prefix: str = "") -> list[Shard]:
        # the loaders close over the store, never over the pipeline: Ray pickles them to its workers
        store, shards = self.store, []
        for name in self.store.shards(stage):
            size = store.shard_counts(stage, name)["out"]

            def load(name=name):
                records = store.read_shard(stage, name)
                return transform(name, records) if transform else records

            shards.append(Shard(prefix + name, load, size))
        return shards

    def _run_stage(self, stage: ModelStage, shards: list[Shard], label: str) -> dict:
        total = sum(s.size for s in shards)
        with stage_progress(label, total, self.show_progress) as progress:
            if self.config.executor == "ray":
                from .executors.ray_executor import run_model_stage_ray

                counts = run_model_stage_ray(stage, shards, self.store, self.config, progress,
                                             extra_fields={"seed": self.config.seed}, should_stop=self._out_of_time)
            else:
                # a stage whose shards are all committed needs no backend: a replay loads no model
                pending = any(not self.store.is_committed(stage.name, shard.name) for shard in shards)
                counts = run_model_stage(stage, shards, self.store, self.backend if pending else None, self.cache,
                                         progress,
                                         extra_fields={"seed": self.config.seed}, should_stop=self._out_of_time)
        self._record(stage.name, counts, prompt_version=stage.prompt_version)
        return counts

    def _record(self, stage: str, counts: dict, **extra) -> None:
        self.manifest["stages"][stage] = {**counts, **extra, "fingerprint": self.fingerprints.get(stage)}
        self._summary_line(stage, counts)
        self.save_manifest()

    @staticmethod
    def _summary_line(stage: str, counts: dict) -> None:
        parts = [f"in {counts.get('in', 0)}", f"out {counts.get('out', 0)}"]
        for key in ("unsuitable", "unparsable", "failed", "removed", "skipped"):
            if counts.get(key):
                parts.append(f"{key} {counts[key]}")
        this_run = counts.get("this_run")
        if this_run:
            parts.append(f"this run: model calls {this_run['model_calls']}, cached {this_run['cached']}, "
                         f"already done {this_run['resumed_records']}")
        console.print(f"[green]✓[/] {stage:<10} " + ", ".join(parts))

    def save_manifest(self) -> None:
        self.manifest.update({
            "synthllm_version": __version__,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": self.config.model_dump(mode="json"),
            "versions": _versions(),
            "model": (self._backend.model_name if self._backend is not None
                      else self.manifest.get("model", self._model_key())),
        })
        self.manifest["reconciliation"] = reconcile(self.manifest)
        self.store.write_manifest(self.manifest)

    # -- steps -----------------------------------------------------------------
    def documents(self) -> dict:
        cfg = self.config.input
        if cfg.path is None:
            raise InputError("input.path is not set: name a corpus file or folder in the config")
        self._fingerprint("documents", cfg.model_dump(mode="json"), self.config.shard_size)
        done_path = self.store.stage_dir("documents") / "_read.json"
        if done_path.exists():
            counts = json.loads(done_path.read_text())
            self._record("documents", counts)
            return counts
        stats = ReadStats()
        size = self.config.shard_size
        batch: list[dict] = []
        index = 0
        with stage_progress("documents", cfg.limit, self.show_progress) as progress:
            reader = read_documents(cfg.path, cfg.format, cfg.text_field, cfg.id_field, cfg.limit, cfg.min_chars,
                                    stats, on_problem=lambda msg: console.print(f"[yellow]skipped[/] {msg}"))
            for doc in reader:
                batch.append(doc)
                progress.advance(1)
                if len(batch) == size:
                    self._commit_documents(index, batch)
                    index, batch = index + 1, []
            if batch:
                self._commit_documents(index, batch)
        counts = {**empty_counts(), "in": stats.read, "ok": stats.yielded, "out": stats.yielded,
                  "skipped": sum(stats.skipped.values()), "skipped_by_reason": stats.skipped,
                  "problems": stats.problems}
        if stats.yielded == 0:
            raise InputError(f"{cfg.path}: no usable documents (read {stats.read}; skipped {stats.skipped})")
        done_path.write_text(json.dumps(counts))
        self._record("documents", counts)
        return counts

    def _commit_documents(self, index: int, docs: list[dict]) -> None:
        name = f"part-{index:05d}"
        if not self.store.is_committed("documents", name):
            self.texts.add(docs)
            n = len(docs)
            self.store.commit_shard("documents", name, docs, [], {**empty_counts(), "in": n, "ok": n, "out": n})

    @property
    def document_stage(self) -> str:
        """Where the generation steps read documents: the filter's output when it runs."""
        return "filter" if self.config.filter.enabled else "documents"

    def filter(self) -> dict:
        """Stage 1: rate a sample, fit the scorer on its embeddings, keep documents scoring above the threshold.

        Dropped documents go to the shard's rejects with kind ``filtered`` and
        their score. With fewer than ``min_ratings`` usable ratings the scorer
        cannot be trusted: every document is kept and the manifest says why.
        """
        from .quality import DomainScorer, load_ratings
        from .stages.filter import ScoreShard, embed_shard
        from .stages.rate import RateDocuments

        cfg = self.config.filter
        self._fingerprint("filter", cfg.model_dump(mode="json"), self._model_key(), self.fingerprints["documents"],
                          self.config.seed)
        summary_path = self.store.stage_dir("filter") / "_summary.json"
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            if self.store.shards("rate"):  # the ratings it was fitted on stay in the manifest
                rate = self.store.stage_counts("rate")
                self._record("rate", {**rate, "this_run": {"model_calls": 0, "cached": 0, "stopped": False,
                                                           "resumed_records": rate["in"]}})
            self._record("filter", summary)
            return summary
        store = self.store
        ids_by_shard = {name: [d["id"] for d in store.read_shard("documents", name)]
                        for name in store.shards("documents")}
        if cfg.ratings_path is not None:
            ratings = load_ratings(cfg.ratings_path)
        else:
            stage = RateDocuments(_sampling(cfg, self.config.seed), cfg.prompt_version, cfg.domain,
                                  cfg.max_document_chars)
            self._fingerprint("rate", self.fingerprints["filter"], _request_shape(stage))
            every_id = [doc_id for ids in ids_by_shard.values() for doc_id in ids]
            sample = set(random.Random(self.config.seed).sample(every_id, min(cfg.sample_size, len(every_id))))
            self._run_stage(stage, self._document_sample(ids_by_shard, sample), "rate")
            ratings = {r["id"]: r["rating"] for r in self.store.iter_records("rate")}
        rated_shards = self._document_sample(ids_by_shard, ratings.keys())
        rated = [doc_id for shard in rated_shards for doc_id in shard.ids]
        summary = {**empty_counts(), "threshold": cfg.threshold, "ratings": len(rated)}
        scorer = None
        if len(rated) >= cfg.min_ratings:
            with console.status("filter: embedding the rated documents ..."):
                embeddings = map_items(embed_shard, [s.load for s in rated_shards], self.config)
            scorer = DomainScorer(random_state=self.config.seed).fit(np.vstack(embeddings),
                                                                     [ratings[doc_id] for doc_id in rated])
            summary["scorer_cv"] = scorer.cv_report
        else:
            summary["applied"] = False
            summary["reason"] = f"only {len(rated)} usable ratings (min_ratings {cfg.min_ratings}): every document kept"
            console.print(f"[yellow]filter: {summary['reason']}[/]")
        shards = self._shards_of("documents")
        with stage_progress("filter", sum(s.size for s in shards), self.show_progress) as progress:
            todo = []
            for shard in shards:
                if self.store.is_committed("filter", shard.name):
                    progress.skip(shard.size)
                else:
                    todo.append(shard)
            map_items(ScoreShard(str(self.store.root), scorer, cfg.threshold), [(s.name, s.load) for s in todo],
                      self.config, on_result=lambda index, _counts: progress.advance(todo[index].size))
        counts = self.store.stage_counts("filter")
        summary.update({key: counts[key] for key in ("in", "out", "removed")})
        summary["kept_share"] = round(summary["out"] / summary["in"], 4) if summary["in"] else None
        summary_path.write_text(json.dumps(summary))
        self.store.write_json("quality/filter.json", summary)
        self._record("filter", summary)
        return summary

    def _document_sample(self, ids_by_shard: dict[str, list[str]], chosen) -> list[Shard]:
        """The documents whose ids are in ``chosen``, as shards named after their document shards.

        ``ids_by_shard`` lists each document shard's ids in order; each shard
        returned also gets ``ids``: its chosen ids in document order.
        """
        store, shards = self.store, []
        for name, ids in ids_by_shard.items():
            mine = [doc_id for doc_id in ids if doc_id in chosen]
            if not mine:
                continue
            wanted = frozenset(mine)

            def load(name=name, wanted=wanted):
                return [d for d in store.read_shard("documents", name) if d["id"] in wanted]

            shards.append(Shard(name, load, len(mine), mine))
        return shards

    def concepts(self) -> dict:
        cfg = self.config.concepts
        stage = ExtractConcepts(_sampling(cfg, self.config.seed), cfg.prompt_version, cfg.max_document_chars,
                               cfg.grammar_version, cfg.topics, cfg.concepts_per_topic)
        self._fingerprint("concepts", cfg.model_dump(mode="json"), self._model_key(), _request_shape(stage),
                          self.fingerprints[self.document_stage], self.config.seed)
        return self._run_stage(stage, self._shards_of(self.document_stage), "concepts")

    def level1(self) -> dict:
        cfg = self.config.level1
        stage = Level1Questions(_sampling(cfg, self.config.seed), cfg.prompt_version, cfg.questions_per_document,
                                cfg.max_document_chars, cfg.grammar_version, cfg.allow_unsuitable)
        self._fingerprint("level1", cfg.model_dump(mode="json"), self._model_key(), _request_shape(stage),
                          self.fingerprints[self.document_stage], self.config.seed)
        return self._run_stage(stage, self._shards_of(self.document_stage), "level1")

    def level2(self) -> dict:
        cfg = self.config.level2
        stage = Level2Questions(_sampling(cfg, self.config.seed), cfg.prompt_version, cfg.questions_per_document,
                                cfg.max_document_chars, cfg.grammar_version)
        self._fingerprint("level2", cfg.model_dump(mode="json"), self._model_key(), _request_shape(stage),
                          self.fingerprints["concepts"], self.config.seed)

        texts = self.texts

        def with_text(_shard: str, concepts: list[dict]) -> list[dict]:
            return [{**c, "text": texts.get(c["doc_id"])} for c in concepts]

        return self._run_stage(stage, self._shards_of("concepts", with_text), "level2")

    def graph(self):
        """Build (or load) the concept graph from every concept record."""
        from .graph import ConceptGraph, ConceptGraphBuilder

        self._fingerprint("graph", self.fingerprints["concepts"])
        folder = self.store.root / "graph"
        marker = folder / "_fingerprint"
        if marker.exists() and marker.read_text() == self.fingerprints["graph"]:
            return ConceptGraph.load(folder)
        builder = ConceptGraphBuilder()
        for record in self.store.iter_records("concepts"):
            builder.add_document(record["doc_id"], [(t["topic"], t["concepts"]) for t in record["topics"]])
        if builder.n_documents == 0:
            console.print("[yellow]level3: no document has parsed concepts, so there is no concept graph to walk[/]")
            return None
        graph = builder.build()
        graph.save(folder)
        marker.write_text(self.fingerprints["graph"])
        self.manifest["graph"] = {"topics": graph.n_topics, "concepts": graph.n_concepts}
        return graph

    def walks(self, graph) -> dict:
        """Sample walks, group their concepts by topic, retrieve reference documents; commit as shards."""
        from .graph import sample_walks

        cfg = self.config.level3
        self._fingerprint("walks", self.fingerprints["graph"], cfg.epochs, cfg.max_walks, cfg.novelty,
                          cfg.reference_documents, self.config.seed)
        if self.store.shards("walks") or graph is None:
            counts = self.store.stage_counts("walks")
            self._record("walks", counts)
            return counts
        walks = sample_walks(graph, epochs=cfg.epochs, seed=self.config.seed, max_walks=cfg.max_walks,
                             novelty=cfg.novelty)
        records = []
        for walk in walks:
            references = graph.top_k_documents(walk.nodes, k=cfg.reference_documents)
            records.append({
                "id": stable_id("w", self.config.seed, walk.walk_index, walk.nodes),
                "walk": walk.nodes,
                "walk_detail": walk.to_dict(),
                "groups": group_walk_concepts(graph, walk),
                "references": [{"doc_id": doc_id, "score": score} for doc_id, score in references],
            })
        size = self.config.shard_size
        for index in range(0, max(len(records), 1), size):
            part = records[index:index + size]
            n = len(part)
            self.store.commit_shard("walks", f"part-{index // size:05d}", part, [],
                                    {**empty_counts(), "in": n, "ok": n, "out": n})
        coverage = graph.coverage(walks)
        self.store.write_json("graph/coverage.json", coverage)
        counts = self.store.stage_counts("walks")
        self._record("walks", counts)
        return counts

    def level3(self) -> dict:
        cfg = self.config.level3
        stage = Level3Questions(_sampling(cfg, self.config.seed), cfg.prompt_version, cfg.questions_per_walk,
                                cfg.max_reference_chars, cfg.grammar_version)
        self._fingerprint("level3", cfg.model_dump(mode="json"), self._model_key(), _request_shape(stage),
                          self.fingerprints["walks"], self.config.seed)

        texts = self.texts

        def with_texts(_shard: str, walks: list[dict]) -> list[dict]:
            return [{**w, "references": [{**r, "text": texts.get(r["doc_id"])} for r in w["references"]]}
                    for w in walks]

        return self._run_stage(stage, self._shards_of("walks", with_texts), "level3")

    def answers(self) -> dict:
        cfg = self.config.answers
        stage = AnswerQuestions(_sampling(cfg, self.config.seed), cfg.prompt_version, cfg.samples, cfg.grammar_version)
        upstream = [self.fingerprints.get(s) for s in QUESTION_STAGES]
        self._fingerprint("answers", cfg.model_dump(mode="json"), self._model_key(), _request_shape(stage),
                          upstream, self.config.seed)
        shards = []
        for source in QUESTION_STAGES:
            if self.fingerprints.get(source):
                shards.extend(self._shards_of(source, prefix=f"{source}-"))
        counts = self._run_stage(stage, shards, "answers")
        self.manifest["stages"]["answers"]["sources"] = [s for s in QUESTION_STAGES if self.fingerprints.get(s)]
        self.save_manifest()
        return counts

    def curate(self) -> dict:
        """Dedup, decontaminate and write the dataset files."""
        from .curate import curate_dataset

        result = curate_dataset(self.store, self.config)
        for stage, counts in result["stages"].items():
            self._record(stage, counts)
        self.manifest["dataset_rows"] = result["dataset_rows"]
        self.manifest["dataset_by_level"] = result["dataset_by_level"]
        self.save_manifest()
        return result

    def _model_key(self) -> str:
        llm = self.config.llm
        return f"{llm.backend}:{llm.model}"

    # -- whole runs ------------------------------------------------------------
    def run(self, until: str | None = None, levels: Iterable[int] = (1, 2, 3)) -> dict:
        """Run every enabled step in order (up to and including ``until``); returns the manifest."""
        cfg = self.config
        levels = set(levels)
        plan: list[tuple[str, Callable[[], object]]] = [("documents", self.documents)]
        if cfg.filter.enabled:
            plan.append(("filter", self.filter))
        if cfg.concepts.enabled:
            plan.append(("concepts", self.concepts))
        if cfg.level1.enabled and 1 in levels:
            plan.append(("level1", self.level1))
        if cfg.level2.enabled and 2 in levels:
            plan.append(("level2", self.level2))
        if cfg.level3.enabled and 3 in levels:
            plan.append(("level3", lambda: (self.walks(self.graph()), self.level3())))
        if cfg.answers.enabled:
            plan.append(("answers", self.answers))
            plan.append(("curate", self.curate))
        names = [name for name, _ in plan]
        if until is not None and until not in names:
            raise ValueError(f"step {until!r} is not enabled in this config (enabled: {', '.join(names)})")
        self._deadline = time.monotonic() + cfg.time_budget if cfg.time_budget else None
        self.manifest["stages"] = {}  # every step records itself again, resumed or not
        stop_reason = None
        try:
            for name, step in plan:
                if self._out_of_time():
                    stop_reason = "time budget spent"
                    break
                step()
                if name == until:
                    break
        except KeyboardInterrupt:
            stop_reason = "interrupted"
        if stop_reason is None:
            self.manifest.pop("partial", None)
            self.save_manifest()
            return self.manifest
        self._finish_partial(stop_reason, names)
        if stop_reason == "interrupted":
            raise KeyboardInterrupt
        return self.manifest

    def _out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _finish_partial(self, reason: str, names: list[str]) -> None:
        """After a stop: record what the shards hold and write the dataset from what is answered."""
        self.manifest["partial"] = {"reason": reason}
        for stage in ("concepts", *QUESTION_STAGES, "walks", "answers"):
            if self.store.shards(stage):
                self.manifest["stages"][stage] = {**self.store.stage_counts(stage),
                                                  "fingerprint": self.fingerprints.get(stage)}
        if "curate" in names:
            self.curate()
        else:
            self.save_manifest()
        console.print(f"[yellow]stopped ({reason}): wrote a partial dataset of {self.manifest.get('dataset_rows', 0)} "
                      "rows; run the same command again to continue[/]")

    def close(self) -> None:
        if self._texts is not None:
            self._texts.close()
        if self._backend is not None:
            self._backend.close()
        self.cache.close()


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


def reconcile(manifest: dict) -> dict:
    """Check that the manifest's counts add up; returns ``{"ok": bool, "problems": [...]}``.

    Rules: every stage has in = ok + unsuitable + unparsable + failed;
    concepts and level1 take every document; level2 takes every document
    whose concepts parsed; level3 takes every walk; answers take every question
    of the enabled levels; dedup takes every answered question; decontamination
    takes what dedup kept; the dataset is what decontamination kept. In a
    partial (stopped) run only the last three links are checked, since a
    stage may have seen only part of what its upstream produced.
    """
    stages = manifest.get("stages", {})
    problems = []
    partial = "partial" in manifest  # a stopped run: stages downstream saw only part of their input

    def get(stage: str, key: str) -> int | None:
        return stages.get(stage, {}).get(key)

    for name, counts in stages.items():
        if name == "documents":
            if counts.get("in") != counts.get("out", 0) + counts.get("skipped", 0):
                problems.append(f"documents: read {counts.get('in')} != kept {counts.get('out')} + skipped "
                                f"{counts.get('skipped')}")
            continue
        if name in ("filter", "dedup", "decontam"):
            if counts.get("in") != counts.get("out", 0) + counts.get("removed", 0):
                problems.append(f"{name}: in {counts.get('in')} != out {counts.get('out')} + removed "
                                f"{counts.get('removed')}")
            continue
        parts = sum(counts.get(k, 0) for k in ("ok", "unsuitable", "unparsable", "failed"))
        if counts.get("in") != parts:
            problems.append(f"{name}: in {counts.get('in')} != ok + unsuitable + unparsable + failed ({parts})")
    documents = "filter" if "filter" in stages else "documents"
    flows = [("documents", "out", "filter", "in"),
             (documents, "out", "concepts", "in"), (documents, "out", "level1", "in"),
             ("concepts", "ok", "level2", "in"), ("walks", "out", "level3", "in"),
             ("answers", "out", "dedup", "in"), ("dedup", "out", "decontam", "in")]
    if partial:
        flows = flows[-2:]
    for src, src_key, dst, dst_key in flows:
        if src in stages and dst in stages and get(src, src_key) != get(dst, dst_key):
            problems.append(f"{src}.{src_key} ({get(src, src_key)}) != {dst}.{dst_key} ({get(dst, dst_key)})")
    if "answers" in stages and not partial:
        sources = stages["answers"].get("sources", [s for s in QUESTION_STAGES if s in stages])
        questions = sum(get(s, "out") or 0 for s in sources)
        if questions != get("answers", "in"):
            problems.append(f"questions of {'+'.join(sources)} ({questions}) != answers.in ({get('answers', 'in')})")
    if "decontam" in stages and "dataset_rows" in manifest and manifest["dataset_rows"] != get("decontam", "out"):
        problems.append(f"decontam.out ({get('decontam', 'out')}) != dataset rows ({manifest['dataset_rows']})")
    return {"ok": not problems, "problems": problems}


def _versions() -> dict:
    from .prompts import available_versions

    versions = {"python": platform.python_version(), "synthllm": __version__,
                "prompts": {name: f"v{available_versions(name)[-1]}"
                            for name in ("concepts", "level1", "level2", "level3", "answer")}}
    for package in ("torch", "transformers", "openai", "pyarrow"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # not installed: nothing to record
            continue
    return versions
