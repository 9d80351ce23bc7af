"""Stage 1 of SynthLLM: keep high-quality, in-domain reference documents.

The paper trains a cheap scorer on a few LLM ratings and lets it score the
whole corpus. Here (our choice) the scorer is a random-forest regressor on
sentence embeddings (the packaged all-MiniLM-L6-v2):

1. an LLM rates a sample of documents 1-10 for domain relevance, clarity and
   language quality (stage ``rate``: :class:`synthllm.stages.rate.RateDocuments`,
   or a JSONL file of ``{"id", "rating"}``);
2. :class:`DomainScorer` learns rating from embedding; k-fold cross-validation
   reports its held-out error;
3. it scores every document; those scoring above the threshold (default 6.5)
   are kept.

Cold start (optional): with no ratings yet, :class:`ColdStartClassifier`
separates a file of positive (in-domain) examples from random corpus
documents; its probability filters the corpus before rating.

This module makes no model calls: ratings come in as data.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

Record = dict[str, Any]

#: documents scoring above this are kept (the paper's threshold)
DEFAULT_THRESHOLD = 6.5
#: characters of a document that are embedded; MiniLM reads 256 word pieces at most
EMBED_CHARS = 2000


def embed_documents(records: list[Record], text_key: str = "text", model: str | None = None,
                    max_chars: int = EMBED_CHARS) -> np.ndarray:
    """Sentence embeddings of the documents' leading text.

    Parameters
    ----------
    records : list of dict
        Documents with a ``text_key`` field.
    text_key : str, default="text"
        Field holding the text.
    model : str or None, default=None
        Sentence-transformers model name or folder; ``None`` uses the
        packaged all-MiniLM-L6-v2 (offline).
    max_chars : int, default=2000
        Characters embedded per document (the embedder truncates anyway;
        cutting early saves tokenisation time).

    Returns
    -------
    ndarray of shape (n_documents, dim)
        L2-normalised float32 embeddings.
    """
    from ..embeddings import DEFAULT_EMBEDDER, embed_texts

    texts = [str(record.get(text_key) or "")[:max_chars] for record in records]
    return embed_texts(texts, model=model or DEFAULT_EMBEDDER)


def _regression_report(ratings: np.ndarray, predicted: np.ndarray, n_splits: int) -> dict:
    from scipy.stats import spearmanr

    errors = predicted - ratings
    baseline = np.abs(ratings - ratings.mean())
    return {
        "n": int(len(ratings)),
        "n_splits": n_splits,
        "mae": round(float(np.abs(errors).mean()), 4),
        "rmse": round(float(np.sqrt((errors**2).mean())), 4),
        "baseline_mae": round(float(baseline.mean()), 4),
        "spearman": round(float(spearmanr(ratings, predicted).statistic), 4) if ratings.std() > 0 else None,
    }


class DomainScorer:
    """Random-forest regressor from document embedding to LLM rating.

    Parameters
    ----------
    n_estimators : int, default=300
        Trees in the forest.
    min_samples_leaf : int, default=2
        Smallest leaf; > 1 smooths the predictions of a small rated sample.
    n_splits : int, default=5
        Folds of the cross-validation run by :meth:`fit` (fewer when the
        sample is small; skipped below 10 ratings).
    random_state : int, default=0
        Seed of the forest and of the fold split.
    n_jobs : int, default=1
        Parallel jobs of scikit-learn.

    Attributes
    ----------
    cv_report : dict
        Held-out error of the scorer: ``{"n", "n_splits", "mae", "rmse",
        "baseline_mae", "spearman"}`` (``baseline_mae``: predicting the mean
        rating); ``{"n", "skipped": reason}`` when too few ratings.
    """

    def __init__(self, n_estimators: int = 300, min_samples_leaf: int = 2, n_splits: int = 5,
                 random_state: int = 0, n_jobs: int = 1):
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.n_splits = n_splits
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.cv_report: dict = {}
        self._model = None

    def _new_model(self):
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
                                     random_state=self.random_state, n_jobs=self.n_jobs)

    def fit(self, embeddings: np.ndarray, ratings: np.ndarray) -> "DomainScorer":
        """Cross-validate, then fit on all ratings.

        Parameters
        ----------
        embeddings : ndarray of shape (n_rated, dim)
            Embeddings of the rated documents.
        ratings : ndarray of shape (n_rated,)
            Their ratings (1-10).

        Returns
        -------
        DomainScorer
            ``self``, fitted, with :attr:`cv_report` filled.
        """
        from sklearn.model_selection import KFold, cross_val_predict

        embeddings = np.asarray(embeddings, dtype=np.float32)
        ratings = np.asarray(ratings, dtype=np.float64)
        if len(embeddings) != len(ratings):
            raise ValueError(f"{len(embeddings)} embeddings but {len(ratings)} ratings")
        if len(ratings) < 2:
            raise ValueError("the scorer needs at least 2 rated documents")
        n_splits = min(self.n_splits, len(ratings) // 2)
        if len(ratings) < 10 or n_splits < 2:
            self.cv_report = {"n": int(len(ratings)), "skipped": "fewer than 10 ratings"}
        else:
            folds = KFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
            predicted = cross_val_predict(self._new_model(), embeddings, ratings, cv=folds)
            self.cv_report = _regression_report(ratings, predicted, n_splits)
        self._model = self._new_model().fit(embeddings, ratings)
        return self

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Predicted rating of each document.

        Parameters
        ----------
        embeddings : ndarray of shape (n_documents, dim)
            Document embeddings.

        Returns
        -------
        ndarray of shape (n_documents,)
            Scores on the rating scale.
        """
        if self._model is None:
            raise RuntimeError("DomainScorer.predict called before fit")
        if len(embeddings) == 0:
            return np.zeros(0)
        return self._model.predict(np.asarray(embeddings, dtype=np.float32))


class ColdStartClassifier:
    """Random-forest classifier: in-domain examples vs random corpus documents.

    Parameters
    ----------
    n_estimators : int, default=300
        Trees in the forest.
    n_splits : int, default=5
        Folds of the cross-validation run by :meth:`fit` (skipped when a
        class has fewer than 5 examples).
    random_state : int, default=0
        Seed.
    n_jobs : int, default=1
        Parallel jobs of scikit-learn.

    Attributes
    ----------
    cv_report : dict
        ``{"n_positive", "n_negative", "n_splits", "auc"}``: out-of-fold ROC AUC.
    """

    def __init__(self, n_estimators: int = 300, n_splits: int = 5, random_state: int = 0, n_jobs: int = 1):
        self.n_estimators = n_estimators
        self.n_splits = n_splits
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.cv_report: dict = {}
        self._model = None

    def _new_model(self):
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=self.n_estimators, class_weight="balanced",
                                      random_state=self.random_state, n_jobs=self.n_jobs)

    def fit(self, positive: np.ndarray, negative: np.ndarray) -> "ColdStartClassifier":
        """Cross-validate, then fit on all examples.

        Parameters
        ----------
        positive : ndarray of shape (n_positive, dim)
            Embeddings of in-domain examples.
        negative : ndarray of shape (n_negative, dim)
            Embeddings of random corpus documents.

        Returns
        -------
        ColdStartClassifier
            ``self``, fitted, with :attr:`cv_report` filled.
        """
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        features = np.vstack([positive, negative]).astype(np.float32)
        labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
        n_splits = min(self.n_splits, len(positive), len(negative))
        self.cv_report = {"n_positive": int(len(positive)), "n_negative": int(len(negative))}
        if n_splits >= 2 and min(len(positive), len(negative)) >= 5:
            folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
            probability = cross_val_predict(self._new_model(), features, labels, cv=folds,
                                            method="predict_proba")[:, 1]
            self.cv_report.update(n_splits=n_splits, auc=round(float(roc_auc_score(labels, probability)), 4))
        else:
            self.cv_report["skipped"] = "fewer than 5 examples in a class"
        self._model = self._new_model().fit(features, labels)
        return self

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Probability that each document is in-domain.

        Parameters
        ----------
        embeddings : ndarray of shape (n_documents, dim)
            Document embeddings.

        Returns
        -------
        ndarray of shape (n_documents,)
            Probabilities in [0, 1].
        """
        if self._model is None:
            raise RuntimeError("ColdStartClassifier.predict called before fit")
        if len(embeddings) == 0:
            return np.zeros(0)
        return self._model.predict_proba(np.asarray(embeddings, dtype=np.float32))[:, 1]


def load_ratings(path: str | Path) -> dict[str, float]:
    """Read a JSONL file of ``{"id", "rating"}`` lines.

    Parameters
    ----------
    path : str or Path
        The ratings file (extra fields are ignored).

    Returns
    -------
    dict
        Rating (float in [1, 10]) by document id; a later line overrides an
        earlier one for the same id.

    Raises
    ------
    InputError
        ``"<path>:<line>: ..."`` when a line lacks an id or a rating in [1, 10],
        the id is not a string or an integer, a line is not UTF-8 JSON, or the
        file holds no ratings at all (an empty file must not mean "keep everything").
    """
    from ..errors import InputError
    from ..io import iter_numbered_jsonl, json_type

    ratings: dict[str, float] = {}
    for line_number, row in iter_numbered_jsonl(path):
        if "id" not in row or "rating" not in row:
            raise InputError.at(path, "needs 'id' and 'rating'", line=line_number)
        doc_id = row["id"]
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
            raise InputError.at(path, f"must be a string or an integer, not {json_type(doc_id)}",
                                line=line_number, field="id")
        try:
            rating = float(row["rating"])
        except (TypeError, ValueError):
            raise InputError.at(path, f"rating {row['rating']!r} is not a number", line=line_number) from None
        if not 1.0 <= rating <= 10.0:  # NaN fails this too
            raise InputError.at(path, f"rating {rating} is outside 1-10", line=line_number)
        ratings[str(doc_id)] = rating
    if not ratings:
        raise InputError.at(path, "no ratings (the file is empty); expected one {\"id\", \"rating\"} object per line")
    return ratings


def sample_for_rating(records: list[Record], n: int, seed: int = 0) -> list[Record]:
    """A reproducible random sample of documents to send to the LLM rater.

    Parameters
    ----------
    records : list of dict
        The corpus.
    n : int
        Sample size (all documents when the corpus is smaller).
    seed : int, default=0
        Seed of the draw.

    Returns
    -------
    list of dict
        The sampled documents, in corpus order.
    """
    chosen = sorted(random.Random(seed).sample(range(len(records)), min(n, len(records))))
    return [records[i] for i in chosen]


def split_by_score(records: list[Record], scores: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                   score_key: str = "domain_score") -> tuple[list[Record], list[Record]]:
    """Keep documents scoring strictly above the threshold.

    Parameters
    ----------
    records : list of dict
        Documents, aligned with ``scores``.
    scores : ndarray of shape (n_documents,)
        Scorer output.
    threshold : float, default=6.5
        Documents with a score above it are kept.
    score_key : str, default="domain_score"
        Field the (rounded) score is written to, in copies of the records.

    Returns
    -------
    kept : list of dict
        Copies of the kept documents with ``score_key`` added.
    dropped : list of dict
        ``{"id", score_key}`` of every dropped document.
    """
    kept, dropped = [], []
    for record, score in zip(records, np.asarray(scores, dtype=float)):
        if score > threshold:
            kept.append({**record, score_key: round(float(score), 4)})
        else:
            dropped.append({"id": record.get("id"), score_key: round(float(score), 4)})
    return kept, dropped
