"""Stage 1's per-shard work: embed documents, score them, keep those above the threshold.

The scorer itself is fitted once, in the driver, on the embeddings of the
rated documents (a reduce step); these callables are the map steps around
it. They are picklable and know nothing of where they run: the pipeline
hands them to the run's executor (``Executor.map``), which calls them in a loop
or as a Ray Data transformation.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..quality.domain_filter import embed_documents
from ..store import RunStore, empty_counts


def embed_shard(load: Callable[[], list[dict]]) -> np.ndarray:
    """The sentence embeddings of a shard's documents (for fitting the scorer)."""
    return embed_documents(load())


class ScoreShard:
    """Scores one document shard and commits it to the ``filter`` stage.

    Kept documents get their ``domain_score``; dropped ones go to the shard's
    rejects with kind ``filtered``, their score and the reason. With no
    scorer (too few ratings to trust one) every document is kept with score
    ``None``.

    Parameters
    ----------
    run_root : the run folder.
    scorer : a fitted :class:`~synthllm.quality.DomainScorer`, or ``None``.
    threshold : documents scoring at or below it are dropped.
    """

    def __init__(self, run_root: str, scorer, threshold: float):
        self.run_root, self.scorer, self.threshold = run_root, scorer, threshold

    def __call__(self, job: tuple[str, Callable[[], list[dict]]]) -> dict:
        """Score and commit ``(shard, load)``; returns the shard's counts."""
        shard, load = job
        return RunStore(self.run_root).commit_once("filter", shard, lambda: self.score(load()))

    def score(self, docs: list[dict]) -> tuple[list[dict], list[dict], dict]:
        """(kept documents with their score, rejects, counts) for one shard (the scorer is seeded: same scores)."""
        scores = self.scorer.predict(embed_documents(docs)) if self.scorer is not None and docs else None
        kept, rejects = [], []
        for position, doc in enumerate(docs):
            score = None if scores is None else round(float(scores[position]), 4)
            if score is None or score > self.threshold:
                kept.append({**doc, "domain_score": score})
            else:
                rejects.append({"id": doc["id"], "kind": "filtered", "score": score,
                                "reason": f"domain score {score} <= threshold {self.threshold}"})
        n = len(docs)
        return kept, rejects, {**empty_counts(), "in": n, "ok": n, "out": len(kept), "removed": len(rejects)}
