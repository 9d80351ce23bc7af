"""Graph construction: counts, weights, shard merging, storage."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from synthllm.graph import ConceptGraph, ConceptGraphBuilder, canonicalize


def brute_force_counts(documents):
    """Pair counts over (kind, canonical name) nodes, counted document by document."""
    counts = Counter()
    for _, topics in documents:
        nodes = {("t", canonicalize(t)) for t, _ in topics} | {("c", canonicalize(c)) for _, cs in topics for c in cs}
        counts.update(frozenset(pair) for pair in combinations(sorted(nodes), 2))
    return counts


def node_key(graph, node):
    if node < graph.n_topics:
        return ("t", graph.topic_names[node])
    return ("c", graph.concept_names[node - graph.n_topics])


def test_counts_match_brute_force(small_graph, documents):
    expected = brute_force_counts(documents)
    upper = small_graph.counts.tocoo()
    observed = {frozenset((node_key(small_graph, r), node_key(small_graph, c))): int(v)
                for r, c, v in zip(upper.row, upper.col, upper.data)}
    assert observed == dict(expected)
    assert (small_graph.counts != small_graph.counts.T).nnz == 0
    assert small_graph.counts.diagonal().sum() == 0


def test_edge_types_weights_and_frequencies(small_graph):
    edges = small_graph.edge_counts()
    total = small_graph.counts.nnz // 2
    assert sum(edges.values()) == total
    assert small_graph.n_topics == 3 and small_graph.topic_names == ["algebra", "calculus", "geometry"]
    weights = small_graph.weights
    np.testing.assert_allclose(weights.data, np.log(small_graph.counts.data + small_graph.epsilon))
    assert small_graph.document_frequency[small_graph.concept_index["slope"]] == 2
    assert small_graph.document_frequency[small_graph.topic_index["algebra"]] == 3
    assert small_graph.doc_ids == ["d0", "d1", "d2", "d3"]


def random_documents(seed, n_docs=300):
    rng = np.random.default_rng(seed)
    documents = []
    for index in range(n_docs):
        topics = [(f"topic {t}", [f"concept {c}" for c in rng.integers(0, 60, rng.integers(1, 6))])
                  for t in rng.integers(0, 15, rng.integers(1, 4))]
        documents.append((f"doc{index:04d}", topics))
    return documents


def assert_same_graph(left: ConceptGraph, right: ConceptGraph):
    assert left.topic_names == right.topic_names
    assert left.concept_names == right.concept_names
    assert left.doc_ids == right.doc_ids
    assert (left.counts != right.counts).nnz == 0
    assert (left.incidence != right.incidence).nnz == 0
    np.testing.assert_array_equal(left.document_frequency, right.document_frequency)


@pytest.mark.parametrize("count_on_shards", [True, False])
def test_merging_shard_builders_equals_single_build(count_on_shards):
    documents = random_documents(1)
    single = ConceptGraphBuilder()
    single.add_records(documents)
    shards = []
    for start in (200, 0, 110):  # shards merged out of order
        shard = ConceptGraphBuilder()
        shard.add_records(documents[start:start + {0: 110, 110: 90, 200: 100}[start]])
        if count_on_shards:
            shard.partial_counts()
        shards.append(shard)
    merged = shards[0]
    for shard in shards[1:]:
        merged.merge(shard)
    assert merged.n_documents == len(documents)
    assert_same_graph(single.build(), merged.build())


def test_add_encoded_equals_add_document():
    documents = random_documents(2, 50)
    one_by_one = ConceptGraphBuilder()
    one_by_one.add_records(documents)
    topic_names = [f"TOPIC  {i}" for i in range(15)]  # spelled differently, same canonical name
    concept_names = [f"concept {i}" for i in range(60)]
    topic_lists = [[int(t.split()[1]) for t, _ in topics] for _, topics in documents]
    concept_lists = [[int(c.split()[1]) for _, cs in topics for c in cs] for _, topics in documents]
    bulk = ConceptGraphBuilder()
    bulk.add_encoded([doc_id for doc_id, _ in documents], topic_names, concept_names,
                     np.cumsum([0] + [len(t) for t in topic_lists]), np.concatenate(topic_lists),
                     np.cumsum([0] + [len(c) for c in concept_lists]), np.concatenate(concept_lists))
    assert_same_graph(one_by_one.build(), bulk.build())


def test_duplicate_document_id_is_an_error():
    builder = ConceptGraphBuilder()
    builder.add_document("same", [("algebra", ["root"])])
    builder.add_document("same", [("geometry", ["angle"])])
    with pytest.raises(ValueError, match="'same' was added more than once"):
        builder.build()


def test_save_load_round_trip(tmp_path, small_graph):
    small_graph.save(tmp_path / "graph")
    loaded = ConceptGraph.load(tmp_path / "graph")
    assert_same_graph(small_graph, loaded)
    assert loaded.epsilon == small_graph.epsilon
    assert loaded.synonyms == small_graph.synonyms
    assert loaded.top_k_documents(["slope", "area"]) == small_graph.top_k_documents(["slope", "area"])


def test_load_rejects_a_folder_without_a_graph(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a graph folder"):
        ConceptGraph.load(tmp_path)


def test_stats_summary(small_graph):
    summary = small_graph.stats(top=2)
    assert summary["nodes"] == {"topics": 3, "concepts": small_graph.n_concepts}
    assert summary["components"]["count"] == 1
    assert summary["top_topics"][0] == {"name": "algebra", "documents": 3,
                                        "degree": int(np.diff(small_graph.counts.indptr)[0])}
    assert len(summary["top_concepts"]) == 2


def test_bulk_build_equals_a_straightforward_reference():
    """add_encoded in two calls with messy vocabularies, against add_document and Aᵀ A.

    The bulk path drops empty names, merges names that canonicalise alike and
    repeats within a document, and counts pairs by sorting packed keys; the
    reference is the per-document path with the counts recomputed as the
    off-diagonal part of the sparse product of the final incidence matrix.
    """
    rng = np.random.default_rng(5)
    topic_names = ["Algebra", "algebra", "!!!", "Geometry", "Prime numbers", "prime number", "topic of sets"]
    concept_names = [f"concept {i}" for i in range(40)] + ["Slopes", "slope", "", "Matrices", "matrix", "radii"]
    one_by_one, bulk = ConceptGraphBuilder(), ConceptGraphBuilder()
    for call, n_docs in enumerate((120, 80)):
        topic_lists = [rng.integers(0, len(topic_names), rng.integers(0, 4)).tolist() for _ in range(n_docs)]
        concept_lists = [rng.integers(0, len(concept_names), rng.integers(0, 7)).tolist() for _ in range(n_docs)]
        doc_ids = [f"doc{(index * 7919 + call) % 1000:04d}-{call}" for index in range(n_docs)]  # unsorted
        for doc_id, topics, concepts in zip(doc_ids, topic_lists, concept_lists):
            one_by_one.add_document(doc_id, [(topic_names[t], []) for t in topics]
                                    + [("", [concept_names[c] for c in concepts])])
        bulk.add_encoded(doc_ids, topic_names, concept_names,
                         np.cumsum([0] + [len(t) for t in topic_lists]), np.array(sum(topic_lists, []), dtype=int),
                         np.cumsum([0] + [len(c) for c in concept_lists]), np.array(sum(concept_lists, []), dtype=int))
    expected, observed = one_by_one.build(), bulk.build()
    assert_same_graph(expected, observed)
    product = (observed.incidence.T @ observed.incidence).tolil()
    product.setdiag(0)
    product = product.tocsr()
    product.eliminate_zeros()
    assert (observed.counts != product).nnz == 0 and observed.counts.nnz == product.nnz > 0
    assert observed.counts.has_sorted_indices and observed.incidence.has_canonical_format
    assert "" not in observed.topic_names + observed.concept_names
    assert observed.topic_names == ["algebra", "geometry", "prime number", "topic of sets"]
