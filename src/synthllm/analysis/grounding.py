"""Is a question about its source? Grounding (SPEC §5).

A small model can write fluent questions that ignore their document: in the
first 20-document demo, 11 of 17 SmolLM2-135M Level-1 questions were variations
of the prompt's worked example (a jacket on sale), and only 35 % of Level-1
questions had their own document among the 3 most similar of the run's 20
documents (chance: 15 %). This module measures that, so a run can say so.

- Level-1 and Level-2: the share of questions whose own source document ranks
  in the top ``k`` (default 3) of the run's documents by cosine similarity of
  all-MiniLM-L6-v2 embeddings (question vs document text, the document cut to
  its first ``max_document_chars`` characters, as the prompts see it). Chance
  is ``k / n_documents``.
- Level-3: the share of questions that mention at least two of their walk's
  concepts (case-insensitive substring match of the concept name, or of all
  its words of 4+ letters), since a Level-3 question has two reference
  documents and no single source.

:func:`quality_warnings` turns the result and the manifest's stage counts into
the one-line warnings a run prints at its end.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

DEFAULT_K = 3
#: a question level whose grounding share is below this gets a warning (the demo before issue #14: 0.35)
MIN_GROUNDING = 0.5
#: a model stage whose parsed share (ok / (ok + unparsable)) is below this gets a warning
MIN_PARSE_RATE = 0.8
_WORD = re.compile(r"[a-z0-9]{4,}")


def source_ranks(questions: list[str], source_ids: list[str], doc_ids: list[str], doc_texts: list[str],
                 embedder: str = "all-MiniLM-L6-v2", max_document_chars: int = 2000) -> list[int | None]:
    """The rank (1 = most similar) of each question's source document among all documents.

    Parameters
    ----------
    questions : question texts.
    source_ids : each question's source document id.
    doc_ids, doc_texts : the run's documents.
    embedder : sentence-transformers model name or folder (see :mod:`synthllm.embeddings`).
    max_document_chars : each document is cut to this many characters before embedding.

    Returns
    -------
    list of int or None : the rank per question; None when its source is not among the documents.
    """
    from ..embeddings import embed_texts

    if not questions:
        return []
    docs = embed_texts([t[:max_document_chars] for t in doc_texts], embedder)
    qs = embed_texts(list(questions), embedder)
    sims = qs @ docs.T
    position = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    ranks: list[int | None] = []
    for row, source in enumerate(source_ids):
        i = position.get(source)
        ranks.append(None if i is None else int((sims[row] > sims[row, i]).sum()) + 1)
    return ranks


def mentions(question: str, concept: str) -> bool:
    """Whether ``question`` names ``concept``: the whole name, or every word of 4+ letters of it."""
    q = question.lower()
    name = concept.lower().strip()
    if name and name in q:
        return True
    words = _WORD.findall(name)
    return bool(words) and all(w in q for w in words)


def level_grounding(rows: list[dict], doc_ids: list[str], doc_texts: list[str], k: int = DEFAULT_K,
                    embedder: str = "all-MiniLM-L6-v2", worst: int = 5) -> dict:
    """Grounding of Level-1/2 rows: share with the source in the top ``k``, and the worst examples.

    Parameters
    ----------
    rows : ``{"id", "question", "source_doc_ids"}`` dicts (the first source is the question's own).
    doc_ids, doc_texts : the run's documents.
    k : the rank a source must reach.
    embedder : sentence-transformers model.
    worst : how many of the lowest-ranked questions to list.

    Returns
    -------
    dict : ``{"share", "n", "worst": [{"id", "question", "source_doc_id", "rank"}]}``; share is None for n = 0.
    """
    usable = [r for r in rows if r.get("source_doc_ids")]
    ranks = source_ranks([r["question"] for r in usable], [r["source_doc_ids"][0] for r in usable],
                         doc_ids, doc_texts, embedder)
    scored = [(rank, r) for rank, r in zip(ranks, usable) if rank is not None]
    share = sum(rank <= k for rank, _ in scored) / len(scored) if scored else None
    scored.sort(key=lambda item: -item[0])
    return {"share": share, "n": len(scored),
            "worst": [{"id": r["id"], "question": r["question"], "source_doc_id": r["source_doc_ids"][0],
                       "rank": rank} for rank, r in scored[:worst]]}


def walk_grounding(rows: list[dict], worst: int = 5) -> dict:
    """Grounding of Level-3 rows: share whose question mentions at least two of its walk's concepts.

    Returns
    -------
    dict : ``{"share", "n", "worst": [{"id", "question", "concepts", "mentioned"}]}`` (worst: fewest mentioned).
    """
    scored = []
    for row in rows:
        walk = row.get("walk")  # a dataset row's walk is its node list; a walk record's detail is a dict
        concepts = list((walk.get("concepts") if isinstance(walk, dict) else None) or row.get("concepts") or [])
        if not concepts:
            continue
        hits = [c for c in concepts if mentions(row["question"], c)]
        scored.append((len(hits), row, concepts))
    share = sum(n >= 2 for n, _, _ in scored) / len(scored) if scored else None
    scored.sort(key=lambda item: item[0])
    return {"share": share, "n": len(scored),
            "worst": [{"id": r["id"], "question": r["question"], "concepts": c, "mentioned": n}
                      for n, r, c in scored[:worst]]}


def grounding(run: str | Path, k: int = DEFAULT_K, embedder: str = "all-MiniLM-L6-v2", worst: int = 5,
              rows: list[dict] | None = None) -> dict:
    """Grounding of a run's dataset (SPEC §5), JSON-able.

    Parameters
    ----------
    run : the run folder (its dataset rows and its ``documents`` stage are read through
        :class:`synthllm.store.RunStore`).
    k : a Level-1/2 question counts as grounded when its source document ranks in the top ``k``.
    embedder : the sentence-transformers model that embeds questions and documents.
    worst : examples listed per level, lowest grounded first.
    rows : the questions to judge (default: the run's dataset rows); any dicts with ``id``,
        ``level``, ``question``, ``source_doc_ids`` and, for Level-3, ``walk``.

    Returns
    -------
    dict : ``{"embedder", "k", "n_documents", "chance": k / n_documents,
        "levels": {"1": {"share", "n", "worst": [...]}, "2": {...}, "3": {"share", "n", "worst": [...]}}}``;
        a level without questions is absent.
    """
    from ..store import RunStore

    store = RunStore(run)
    if rows is None:
        rows = store.dataset_rows()
    docs = list(store.iter_records("documents"))
    doc_ids = [d["id"] for d in docs]
    doc_texts = [d.get("text", "") for d in docs]
    result = {"embedder": embedder, "k": k, "n_documents": len(docs),
              "chance": min(1.0, k / len(docs)) if docs else None, "levels": {}}
    for level in (1, 2):
        mine = [r for r in rows if r.get("level") == level]
        if mine and docs:
            result["levels"][str(level)] = level_grounding(mine, doc_ids, doc_texts, k, embedder, worst)
    level3 = [r for r in rows if r.get("level") == 3]
    if level3:
        result["levels"]["3"] = walk_grounding(level3, worst)
    return result


def quality_warnings(manifest_stages: dict, grounding: dict | None) -> list[str]:
    """One-line warnings for the end of a run whose replies are poorly parsed or poorly grounded.

    Thresholds: a model stage (``concepts``, ``level1/2/3``, ``answers``, ``rate``) whose
    parsed share ``ok / (ok + unparsable)`` is below :data:`MIN_PARSE_RATE` (0.8); a question
    level whose grounding share is below :data:`MIN_GROUNDING` (0.5; the issue-#14 demo had
    0.35 for Level-1 at a chance level of 0.15) or not above chance.

    Parameters
    ----------
    manifest_stages : the manifest's ``stages`` dict (per-stage counts with ``ok`` and ``unparsable``).
    grounding : the result of :func:`grounding`, or None.

    Returns
    -------
    list of str : warnings, each one line; empty when all is well.
    """
    warnings = []
    for stage in ("rate", "concepts", "level1", "level2", "level3", "answers"):
        counts = manifest_stages.get(stage) or {}
        ok, bad = counts.get("ok", 0), counts.get("unparsable", 0)
        if ok + bad and ok / (ok + bad) < MIN_PARSE_RATE:
            warnings.append(f"{stage}: only {ok} of {ok + bad} replies could be parsed "
                            f"({ok / (ok + bad):.0%} < {MIN_PARSE_RATE:.0%}); see stages/{stage}/*.rejects.jsonl "
                            "(a larger model, or a server with constrained decoding, helps)")
    chance = (grounding or {}).get("chance")
    for level, result in ((grounding or {}).get("levels") or {}).items():
        share = result.get("share")
        if share is None:
            continue
        floor = MIN_GROUNDING if level == "3" or chance is None else max(MIN_GROUNDING, chance)
        if share < floor:
            what = ("mention two of their walk's concepts" if level == "3"
                    else f"have their source among the top {grounding['k']} of {grounding['n_documents']} "
                         f"documents (chance {chance:.0%})")
            warnings.append(f"level {level}: only {share:.0%} of {result['n']} questions {what}; "
                            "the model may be ignoring its documents (see report.json 'grounding')")
    return warnings
