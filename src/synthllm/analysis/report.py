"""The run report: ``report.json`` (every number) and a self-contained ``report.html``.

Compute and presentation are apart: :func:`build_report` computes the report
dictionary (what ``report.json`` holds) from the run folder, read only through
:class:`~synthllm.store.RunStore`; :mod:`.plots` draws its figures from that
dictionary; the page is the jinja2 template ``templates/report.html.j2``
(autoescaped: questions and documents are untrusted text). So every figure and
table in the page has its numbers in ``report.json``. Plots are embedded as
base64 PNG; the page has inline CSS and no external URLs.

Curation's removed rows are whole dataset rows plus ``removed_by`` and
``reason`` (:class:`~synthllm.records.RemovedRow`); the report reads their
level, question and answer from the row and what they matched from ``reason``.
(Before, it read ``level``/``question`` from curation's bare match records, so
on every real run the curation section showed ``{"None": n}`` and blank
examples and ``raw_vs_curated`` was always skipped.)

The sample browser shows, per level, a seeded sample of rows with their
answers, concepts, walk and the first lines of their source documents, so a
reader can judge the data by eye: 8 rows per level by default (24 rows add
30 kB to the 147 kB page of the 12-document scripted test run).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..store import RunStore
from . import diversity
from .divergence import classifier_tv, curation_tv, mmd_rbf

LEVELS = (1, 2, 3)
LENGTH_EDGES = [0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]


class RunFolderError(InputError):
    """A run folder that cannot be read; the message names the file and what is wrong."""


# -- reading the run folder (through RunStore only) --------------------------------

def open_run(run_dir: Path) -> RunStore:
    """The :class:`~synthllm.store.RunStore` of an existing run folder (never creates one)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: run folder not found")
    return RunStore(run_dir, create=False)


def read_manifest(store: RunStore) -> dict:
    """``manifest.json`` as a dict (``{}`` when absent); a file that is not a JSON object is an :class:`InputError`."""
    manifest = store.read_json("manifest.json")
    if manifest is None:
        return {}
    if not isinstance(manifest, dict):
        raise RunFolderError(f"{store.manifest_path}: not a JSON object")
    return manifest


def load_dataset(run_dir: Path | RunStore) -> list[dict]:
    """Rows of the run's dataset (``dataset.parquet``, else ``dataset.jsonl``).

    Parameters
    ----------
    run_dir : Path or RunStore
        The run folder.

    Returns
    -------
    list of dict
        One dict per sample (:class:`~synthllm.records.DatasetRow`), with at
        least ``level``, ``question`` and ``answer``.
    """
    store = run_dir if isinstance(run_dir, RunStore) else open_run(run_dir)
    rows = store.dataset_parquet_rows()
    source = store.root / "dataset.parquet"
    if rows is None:
        source = store.root / "dataset.jsonl"
        if not source.is_file():
            raise RunFolderError(f"{store.root}: no dataset.parquet or dataset.jsonl (is this a finished run folder?)")
        rows = store.dataset_rows()
    for number, row in enumerate(rows, start=1):
        missing = [key for key in ("level", "question", "answer") if row.get(key) is None]
        if missing:
            raise RunFolderError(f"{source}: row {number}: missing {', '.join(missing)}")
    return rows


def load_documents(run_dir: Path | RunStore) -> list[dict]:
    """Input documents of the run (committed ``documents`` shards), with their ``meta``."""
    store = run_dir if isinstance(run_dir, RunStore) else open_run(run_dir)
    return [document for document in store.iter_records("documents") if document.get("text")]


# -- sections -------------------------------------------------------------------

def _summary(values: list[int]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    if not array.size:
        return {"n": 0}
    counts, _ = np.histogram(np.clip(array, 0, LENGTH_EDGES[-1] - 1), bins=LENGTH_EDGES)
    return {"n": int(array.size), "mean": float(array.mean()), "median": float(np.median(array)),
            "p90": float(np.percentile(array, 90)), "max": int(array.max()),
            "hist": {"edges": LENGTH_EDGES, "counts": [int(c) for c in counts]}}


def length_section(rows: list[dict]) -> dict:
    """Question and answer lengths per level, in word-and-punctuation tokens.

    Parameters
    ----------
    rows : list of dict
        Dataset rows.

    Returns
    -------
    dict
        ``{level: {"question": summary, "answer": summary}}`` with mean,
        median, p90, max and a histogram on fixed edges.
    """
    by_level: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"question": [], "answer": []})
    for row in rows:
        entry = by_level[str(row["level"])]
        entry["question"].append(len(diversity.tokenize(row["question"])))
        entry["answer"].append(len(diversity.tokenize(row["answer"])))
    return {"unit": "word and punctuation tokens",
            "levels": {level: {part: _summary(values) for part, values in parts.items()}
                       for level, parts in sorted(by_level.items())}}


def _sample_groups(keys: list[tuple], limit: int, rng: np.random.Generator) -> list[int]:
    """Positions of whole groups, taken in random order until ``limit`` positions are reached."""
    members: dict[tuple, list[int]] = defaultdict(list)
    for position, key in enumerate(keys):
        members[key].append(position)
    groups = list(members.values())
    chosen: list[int] = []
    for index in rng.permutation(len(groups)):
        if len(chosen) >= limit:
            break
        chosen.extend(groups[index])
    return sorted(chosen[:limit])


def diversity_section(rows: list[dict], *, max_per_level: int = 2000, max_per_group: int = 50,
                      seed: int = 0, embedder: str = "all-MiniLM-L6-v2") -> tuple[dict, dict]:
    """Diversity of the questions per level and overall.

    Questions are embedded with :func:`synthllm.embeddings.embed_texts`; at
    most ``max_per_level`` per level, taken as whole source-document groups so
    that within-source pairs survive the sampling.

    Parameters
    ----------
    rows : list of dict
        Dataset rows.
    max_per_level : int, default=2000
        Questions embedded per level.
    max_per_group : int, default=50
        Questions per source group in the within-source histogram (paper: 50).
    seed : int, default=0
        Seed of the sampling.
    embedder : str, default="all-MiniLM-L6-v2"
        Sentence-transformers model name or folder.

    Returns
    -------
    tuple of (dict, dict)
        The section, and ``{level: (row indices, embeddings)}`` for reuse.
    """
    from synthllm.embeddings import embed_texts

    rng = np.random.default_rng(seed)
    levels: dict[str, dict] = {}
    embedded: dict[str, tuple[list[int], np.ndarray]] = {}
    for level in LEVELS:
        indices = [i for i, row in enumerate(rows) if row["level"] == level]
        if not indices:
            continue
        # Questions of one document (Level-1/2) or of one pair of grounding documents (Level-3).
        keys = [tuple(rows[i].get("source_doc_ids") or [rows[i].get("id")]) for i in indices]
        picked = _sample_groups(keys, max_per_level, rng)
        chosen = [indices[i] for i in picked]
        vectors = embed_texts([rows[i]["question"] for i in chosen], model=embedder)
        similarities = diversity.within_group_similarities(vectors, [keys[i] for i in picked],
                                                           max_per_group=max_per_group, rng=rng)
        questions = [rows[i]["question"] for i in indices]
        levels[str(level)] = {
            "n_questions": len(indices),
            "n_embedded": len(chosen),
            "n_sources": len(set(keys)),
            "within_source": diversity.similarity_histogram(similarities),
            "mean_pairwise_cosine": diversity.mean_pairwise_cosine(vectors),
            "vendi": diversity.vendi_score(vectors),
            "distinct": {f"distinct_{n}": diversity.distinct_n(questions, n) for n in (1, 2, 3)},
        }
        embedded[str(level)] = (chosen, vectors)
    section: dict[str, Any] = {"embedder": embedder, "levels": levels}
    if embedded:
        everything = np.vstack([vectors for _, vectors in embedded.values()])
        questions = [row["question"] for row in rows]
        section["overall"] = {
            "n_embedded": int(everything.shape[0]),
            "mean_pairwise_cosine": diversity.mean_pairwise_cosine(everything),
            "vendi": diversity.vendi_score(everything),
            "distinct": {f"distinct_{n}": diversity.distinct_n(questions, n) for n in (1, 2, 3)},
        }
    return section, embedded


def _sample_texts(texts: list[str], limit: int, rng: np.random.Generator) -> list[str]:
    if len(texts) <= limit:
        return list(texts)
    return [texts[i] for i in sorted(rng.choice(len(texts), size=limit, replace=False))]


def _sample_text(row: dict) -> str:
    return f"{row['question']}\n\n{row['answer']}"


def divergence_section(rows: list[dict], documents: list[dict], removed: list[dict], *,
                       max_per_side: int = 500, seed: int = 0,
                       embedder: str = "all-MiniLM-L6-v2") -> dict:
    """TV (classifier two-sample test) and MMD estimates on sentence embeddings.

    ``anchor_vs_generated`` estimates ``D_TV(D, D_M)``: input documents vs
    generated samples (question and answer). ``raw_vs_curated`` estimates
    ``D_TV(D_M, D_gen)`` from the removed (dedup, decontamination) vs kept samples.

    Parameters
    ----------
    rows : list of dict
        Kept dataset rows.
    documents : list of dict
        Input documents (``text``).
    removed : list of dict
        Samples removed by curation (``question``, ``answer``).
    max_per_side : int, default=500
        Texts embedded per side of each test.
    seed : int, default=0
        Seed of the sampling and the tests.
    embedder : str, default="all-MiniLM-L6-v2"
        Sentence-transformers model name or folder.

    Returns
    -------
    dict
        Sections ``anchor_vs_generated`` and ``raw_vs_curated``, each either
        results or ``{"skipped": reason}``.
    """
    from synthllm.embeddings import embed_texts

    rng = np.random.default_rng(seed)
    generated = [_sample_text(row) for row in rows]
    section: dict[str, Any] = {"embedder": embedder,
                               "note": "texts are embedded as the embedder reads them (first 256 word pieces)"}
    kept_vectors = embed_texts(_sample_texts(generated, max_per_side, rng), model=embedder) if generated else None
    anchors = [document["text"] for document in documents]
    if len(anchors) >= 5 and len(generated) >= 5:
        anchor_vectors = embed_texts(_sample_texts(anchors, max_per_side, rng), model=embedder)
        section["anchor_vs_generated"] = {
            "classifier": classifier_tv(anchor_vectors, kept_vectors, seed=seed),
            "mmd": mmd_rbf(anchor_vectors, kept_vectors, seed=seed),
        }
    else:
        section["anchor_vs_generated"] = {"skipped": "needs at least 5 documents and 5 samples"}
    usable = [row for row in removed if row.get("question") and row.get("answer")]
    if len(usable) >= 5 and len(generated) >= 5:
        removed_vectors = embed_texts(_sample_texts([_sample_text(r) for r in usable], max_per_side, rng),
                                      model=embedder)
        # The removed share comes from the full counts, not from the embedded subsamples.
        share = len(usable) / (len(usable) + len(generated))
        section["raw_vs_curated"] = {
            **curation_tv(removed_vectors, kept_vectors, removed_share=share, seed=seed),
            "mmd_removed_vs_kept": mmd_rbf(removed_vectors, kept_vectors, seed=seed),
        }
    else:
        section["raw_vs_curated"] = {"skipped": f"needs at least 5 removed samples with text, found {len(usable)}"}
    return section


def _reason(row: dict) -> dict:
    """What a removed row matched: its ``reason``; a run folder from before RemovedRow has the match at top level."""
    reason = row.get("reason")
    return reason if isinstance(reason, dict) else row


def quality_section(store: RunStore, stages: dict | None = None, *, max_examples: int = 5) -> dict:
    """What curation removed (``quality/dedup.jsonl``, ``quality/decontam.jsonl``) and the document filter.

    Parameters
    ----------
    store : RunStore
        The run folder.
    stages : dict, optional
        The manifest's stage counts: a check that ran (``dedup``,
        ``decontam``) gets its section even when it removed nothing.
    max_examples : int, default=5
        Removed rows shown per check.

    Returns
    -------
    dict
        ``dedup`` (``removed``, ``by_level``, ``by_kind``, ``examples``),
        ``decontam`` (``removed``, ``by_level``, ``by_benchmark``,
        ``examples``) and ``filter`` (``quality/filter.json``), each only when
        the run has it.
    """
    section: dict[str, Any] = {}
    dedup, decontam = store.removed("dedup"), store.removed("decontam")
    filter_summary = store.read_json("quality/filter.json")
    stages = stages or {}
    if dedup or "dedup" in stages:
        section["dedup"] = {
            "removed": len(dedup),
            "by_level": dict(sorted(Counter(str(r.get("level")) for r in dedup).items())),
            "by_kind": dict(Counter(str(_reason(r).get("kind")) for r in dedup).most_common()),
            "examples": [{"id": r.get("id"), "level": r.get("level"), "question": (r.get("question") or "")[:300],
                          "duplicate_of": _reason(r).get("duplicate_of"),
                          "similarity": _reason(r).get("similarity"), "kind": _reason(r).get("kind")}
                         for r in dedup[:max_examples]],
        }
    if decontam or "decontam" in stages:
        section["decontam"] = {
            "removed": len(decontam),
            "benchmarks": (stages.get("decontam") or {}).get("benchmarks"),
            "by_level": dict(sorted(Counter(str(r.get("level")) for r in decontam).items())),
            "by_benchmark": dict(Counter(str(_reason(r).get("benchmark")) for r in decontam).most_common()),
            "examples": [{"id": r.get("id"), "level": r.get("level"), "question": (r.get("question") or "")[:300],
                          "benchmark": _reason(r).get("benchmark"), "field": _reason(r).get("field"),
                          "score": _reason(r).get("score"),
                          "matched_text": (_reason(r).get("matched_text") or "")[:300]}
                         for r in decontam[:max_examples]],
        }
    if filter_summary is not None:
        section["filter"] = filter_summary
    return section


def _first_lines(text: str, title: str | None, *, lines: int = 3, width: int = 240) -> list[str]:
    """The first non-empty lines of a document, each cut to ``width`` characters; a leading title line is skipped."""
    found = [line.strip() for line in text.splitlines() if line.strip()]
    if title and found and found[0] == title.strip():
        found = found[1:]
    return [line if len(line) <= width else line[: width - 1] + "…" for line in found[:lines]]


def sample_browser(rows: list[dict], documents: list[dict], *, per_level: int = 8, seed: int = 0) -> dict:
    """A seeded sample of rows per level, with their source documents, for reading by eye.

    Parameters
    ----------
    rows : list of dict
        Dataset rows.
    documents : list of dict
        Input documents (``id``, ``text``, ``meta``); a document's title is
        ``meta["title"]`` when the corpus had one.
    per_level : int, default=8
        Rows shown per level (all of them when a level has fewer).
    seed : int, default=0
        Seed of the sampling.

    Returns
    -------
    dict
        ``{"per_level", "seed", "levels": {level: {"n", "rows": [...]}}}``;
        each row has ``id, question, answer, final_answer, agreement,
        concepts, walk`` and ``sources`` (``id``, ``title``, ``first_lines``;
        ``found`` is false for an id not among the documents).
    """
    rng = np.random.default_rng(seed)
    by_id = {document["id"]: document for document in documents}
    levels: dict[str, dict] = {}
    for level in LEVELS:
        indices = [i for i, row in enumerate(rows) if row["level"] == level]
        if not indices:
            continue
        chosen = indices if len(indices) <= per_level else \
            [indices[i] for i in sorted(rng.choice(len(indices), size=per_level, replace=False))]
        shown = []
        for index in chosen:
            row = rows[index]
            sources = []
            for doc_id in row.get("source_doc_ids") or []:
                document = by_id.get(doc_id)
                if document is None:
                    sources.append({"id": doc_id, "title": None, "first_lines": [], "found": False})
                    continue
                title = (document.get("meta") or {}).get("title")
                title = str(title) if title else None
                sources.append({"id": doc_id, "title": title, "found": True,
                                "first_lines": _first_lines(document["text"], title)})
            shown.append({key: row.get(key) for key in ("id", "question", "answer", "final_answer", "agreement",
                                                          "concepts", "walk")} | {"sources": sources})
        levels[str(level)] = {"n": len(indices), "rows": shown}
    return {"per_level": per_level, "seed": seed, "levels": levels}


def build_report(run_dir: Path, *, lm: bool = True, lm_model: str | None = None, max_embed: int = 2000,
                 max_divergence: int = 500, max_lm_texts: int = 32, max_lm_tokens: int = 128,
                 seed: int = 0, embedder: str = "all-MiniLM-L6-v2", browse_per_level: int = 8) -> dict:
    """Compute every number of the report for one run folder.

    Parameters
    ----------
    run_dir : Path
        The run folder (``manifest.json`` and ``dataset.parquet``/``.jsonl``).
    lm : bool, default=True
        Compute the reference-LM entropy estimates (slow on CPU).
    lm_model : str, optional
        Reference LM: a local Hugging Face folder or ``.gguf``; ``None`` for the
        embedded SmolLM2-135M-Instruct.
    max_embed : int, default=2000
        Questions embedded per level for diversity.
    max_divergence : int, default=500
        Texts embedded per side of each two-sample test.
    max_lm_texts, max_lm_tokens : int, default=32, 128
        Texts per set and tokens per text scored by the reference LM.
    seed : int, default=0
        Seed of every sampling step.
    embedder : str, default="all-MiniLM-L6-v2"
        Sentence-transformers model for all embeddings.
    browse_per_level : int, default=8
        Rows per level in the sample browser.

    Returns
    -------
    dict
        The report (what ``report.json`` holds).
    """
    store = open_run(run_dir)
    manifest = read_manifest(store)
    rows = load_dataset(store)
    documents = load_documents(store)
    quality = quality_section(store, manifest.get("stages"))
    removed = store.removed("dedup") + store.removed("decontam")
    coverage = store.read_json("graph/coverage.json")
    report: dict[str, Any] = {
        "run_dir": str(store.root.resolve()),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"lm": lm, "lm_model": lm_model or "smollm2-135m-instruct (embedded)", "max_embed": max_embed,
                     "max_divergence": max_divergence, "max_lm_texts": max_lm_texts,
                     "max_lm_tokens": max_lm_tokens, "seed": seed, "browse_per_level": browse_per_level},
        "counts": {
            "dataset_rows": len(rows),
            "manifest_dataset_rows": manifest.get("dataset_rows"),
            "by_level": {str(level): sum(1 for r in rows if r["level"] == level) for level in LEVELS},
            "documents": len(documents),
            "stages": manifest.get("stages", {}),
        },
        "versions": manifest.get("versions", {}),
        "lengths": length_section(rows),
    }
    report["diversity"], _ = diversity_section(rows, max_per_level=max_embed, seed=seed, embedder=embedder)
    report["coverage"] = coverage
    report["divergence"] = divergence_section(rows, documents, removed, max_per_side=max_divergence,
                                              seed=seed, embedder=embedder)
    if lm and rows and documents:
        from .entropy import entropy_estimates, load_lm

        model, tokenizer = load_lm(lm_model)
        report["entropy"] = entropy_estimates(
            model, tokenizer, [d["text"] for d in documents], [_sample_text(r) for r in rows],
            [r["question"] for r in rows], [r["answer"] for r in rows],
            max_texts=max_lm_texts, max_tokens=max_lm_tokens, seed=seed)
    else:
        report["entropy"] = {"skipped": "--no-lm" if not lm else "needs documents and samples"}
    report["quality"] = quality
    if manifest.get("grounding"):  # computed at the end of the run (synthllm.analysis.grounding)
        report["grounding"] = manifest["grounding"]
    report["samples"] = sample_browser(rows, documents, per_level=browse_per_level, seed=seed)
    report["figures"] = [
        {"id": "stage_counts", "title": "Records in and out of each stage", "data": "counts.stages"},
        {"id": "lengths", "title": "Question and answer lengths per level", "data": "lengths.levels"},
        {"id": "diversity", "title": "Within-source question similarity per level",
         "data": "diversity.levels.*.within_source"},
    ]
    return _finite(report)


def _finite(value: Any) -> Any:
    """Replace NaN and infinities by None so that report.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


# -- rendering ------------------------------------------------------------------

def fmt(value: Any) -> str:
    """A cell's text: ``–`` for missing, 4 significant digits for floats, JSON (cut) for lists and dicts.

    Not escaped: the template's autoescape does that, once.
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)[:300]
    return str(value)


def _environment():
    try:
        import jinja2
    except ImportError:
        from ..errors import MissingDependency

        raise MissingDependency("the report needs jinja2: pip install 'synthllm[analysis]'") from None
    environment = jinja2.Environment(loader=jinja2.PackageLoader("synthllm.analysis", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True)
    environment.filters["fmt"] = fmt
    environment.filters["pick"] = lambda mapping, keys: [mapping.get(key) for key in keys]
    return environment


def render_html(report: dict) -> str:
    """Self-contained HTML page for a report dictionary from :func:`build_report`.

    Rendered from ``templates/report.html.j2`` with autoescape; a
    ``report["grounding"]`` section, when present, is shown too.

    Parameters
    ----------
    report : dict
        The report.

    Returns
    -------
    str
        The page (inline CSS, base64 PNG figures, no external URLs).
    """
    from .plots import figures

    titles = {figure["id"]: figure["title"] for figure in report["figures"]}
    return _environment().get_template("report.html.j2").render(
        report=report, images=figures(report), titles=titles)


def write_report(run_dir: Path, *, lm: bool = True, out_dir: Path | None = None, **options) -> dict:
    """Compute the report of a run and write ``report.json`` and ``report.html``.

    Parameters
    ----------
    run_dir : Path
        The run folder.
    lm : bool, default=True
        Include the reference-LM entropy estimates.
    out_dir : Path, optional
        Where to write the two files (default: ``run_dir``).
    **options
        Passed to :func:`build_report` (``lm_model``, ``max_embed``,
        ``max_divergence``, ``max_lm_texts``, ``max_lm_tokens``, ``seed``,
        ``embedder``, ``browse_per_level``).

    Returns
    -------
    dict
        The report.
    """
    from ..store import atomic_write_text

    report = build_report(Path(run_dir), lm=lm, **options)
    target = Path(out_dir) if out_dir else Path(run_dir)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target / "report.json", json.dumps(report, indent=2, ensure_ascii=False))
    atomic_write_text(target / "report.html", render_html(report))
    return report
