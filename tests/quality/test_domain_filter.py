"""The embedding scorer separates math from non-math documents; ratings files are validated."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from synthllm.quality import (
    ColdStartClassifier,
    DomainScorer,
    embed_documents,
    load_ratings,
    sample_for_rating,
    split_by_score,
)


@pytest.fixture(scope="module")
def labelled_embeddings(shared_data):
    """MiniLM embeddings of 80 OpenStax math documents and the 45 non-math ones, with labels."""
    math_docs = [json.loads(line) for line in open(shared_data / "corpus" / "openstax_math.jsonl")]
    other_docs = [json.loads(line) for line in open(shared_data / "corpus" / "nonmath.jsonl")]
    math_docs = random.Random(0).sample(math_docs, 80)
    embeddings = embed_documents(math_docs + other_docs, max_chars=600)
    labels = np.concatenate([np.ones(len(math_docs)), np.zeros(len(other_docs))])
    return embeddings, labels


def test_regressor_separates_math_from_nonmath_out_of_fold(labelled_embeddings):
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import KFold, cross_val_predict

    embeddings, labels = labelled_embeddings
    ratings = np.where(labels == 1, 9.0, 2.0)  # true labels as ratings
    scorer = DomainScorer(n_estimators=100, random_state=0)
    folds = KFold(5, shuffle=True, random_state=0)
    held_out = cross_val_predict(scorer._new_model(), embeddings, ratings, cv=folds)
    auc = roc_auc_score(labels, held_out)
    print(f"held-out AUC of the embedding scorer, math vs non-math: {auc:.4f}")
    assert auc > 0.95
    scorer.fit(embeddings, ratings)
    report = scorer.cv_report
    assert report["n"] == len(labels) and report["n_splits"] == 5
    assert report["mae"] < report["baseline_mae"]
    assert report["rmse"] >= report["mae"] and report["spearman"] > 0.6
    kept, dropped = split_by_score([{"id": i} for i in range(len(labels))], held_out, threshold=6.5)
    kept_ids = {r["id"] for r in kept}
    assert sum(labels[i] for i in kept_ids) / len(kept_ids) > 0.95  # kept documents are math
    assert len(kept) + len(dropped) == len(labels)


def test_cold_start_classifier_auc(labelled_embeddings):
    embeddings, labels = labelled_embeddings
    classifier = ColdStartClassifier(n_estimators=100).fit(embeddings[labels == 1][:40], embeddings[labels == 0])
    assert classifier.cv_report["auc"] > 0.95
    probability = classifier.predict(embeddings[labels == 1][40:])
    assert probability.mean() > 0.5 and probability.shape == (40,)


def test_scorer_small_sample_skips_cv_and_predict_before_fit_fails():
    rng = np.random.default_rng(0)
    scorer = DomainScorer(n_estimators=10)
    with pytest.raises(RuntimeError, match="before fit"):
        scorer.predict(rng.normal(size=(2, 4)))
    scorer.fit(rng.normal(size=(6, 4)), np.array([1, 2, 3, 8, 9, 10]))
    assert scorer.cv_report == {"n": 6, "skipped": "fewer than 10 ratings"}
    assert scorer.predict(rng.normal(size=(3, 4))).shape == (3,)
    with pytest.raises(ValueError, match="3 embeddings but 2 ratings"):
        DomainScorer().fit(rng.normal(size=(3, 4)), np.array([1.0, 2.0]))


def test_load_ratings_validates_lines(tmp_path):
    good = tmp_path / "ratings.jsonl"
    good.write_text('{"id": "a", "rating": 7}\n\n{"id": "b", "rating": "8.5", "note": "x"}\n')
    assert load_ratings(good) == {"a": 7.0, "b": 8.5}
    for content, message in [('{"id": "a"}\n', r":1: needs 'id' and 'rating'"),
                             ('{"id": "a", "rating": 7}\n{"id": "b", "rating": 11}\n', r":2: rating 11.0 is outside"),
                             ('{"id": "a", "rating": "high"}\n', r":1: rating 'high' is not a number"),
                             ('not json\n', r":1: not valid JSON")]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(content)
        with pytest.raises(ValueError, match=message):
            load_ratings(bad)


def test_sample_for_rating_is_reproducible_and_ordered():
    records = [{"id": i} for i in range(50)]
    first, second = sample_for_rating(records, 10, seed=3), sample_for_rating(records, 10, seed=3)
    assert first == second and len(first) == 10
    assert [r["id"] for r in first] == sorted(r["id"] for r in first)
    assert sample_for_rating(records, 10, seed=4) != first
    assert len(sample_for_rating(records, 500)) == 50
