"""Top-k Jaccard retrieval through the inverted index equals brute force."""

from __future__ import annotations

import numpy as np

from synthllm.graph import ConceptGraphBuilder


def brute_force_top_k(document_sets, query, k):
    scored = []
    for doc_id, names in document_sets.items():
        score = len(query & names) / len(query | names)
        if score > 0:
            scored.append((doc_id, score))
    return sorted(scored, key=lambda item: (-item[1], item[0]))[:k]


def test_top_k_equals_brute_force_on_random_data():
    rng = np.random.default_rng(7)
    builder = ConceptGraphBuilder()
    document_sets = {}
    for index in range(400):
        # few names and short documents: many exact ties, so the tie-break is exercised
        topics = [(f"t{t}", [f"c{c}" for c in rng.choice(25, size=rng.integers(1, 4), replace=False)])
                  for t in rng.choice(6, size=rng.integers(1, 3), replace=False)]
        doc_id = f"doc{rng.integers(0, 10**6):06d}-{index}"
        builder.add_document(doc_id, topics)
        document_sets[doc_id] = {t for t, _ in topics} | {c for _, cs in topics for c in cs}
    graph = builder.build()
    for _ in range(100):
        pool = [f"t{i}" for i in range(6)] + [f"c{i}" for i in range(25)] + ["unknown concept"]
        query = set(rng.choice(pool, size=rng.integers(1, 7), replace=False).tolist())
        for k in (1, 2, 5):
            got = graph.top_k_documents(query, k=k)
            expected = brute_force_top_k(document_sets, query, k)
            assert [doc for doc, _ in got] == [doc for doc, _ in expected]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in expected])


def test_query_names_are_canonicalised_and_strings_shared_by_kinds_count_once(small_graph):
    # d3 holds topic "algebra" and key concept "algebra": one name in its set {algebra, polynomial, root}
    result = small_graph.top_k_documents(["ALGEBRA", "Polynomials", "roots"], k=2)
    assert result[0] == ("d3", 1.0)
    assert result[1][0] == "d2"
    assert small_graph.top_k_documents(["nothing like it"], k=2) == []
    assert small_graph.top_k_documents(["slope"], k=0) == []
