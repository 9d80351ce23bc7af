"""Random walks: step structure, transition law, seeding, dead ends, novelty."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from synthllm.graph import ConceptGraph, ConceptGraphBuilder, Walk, sample_walk_arrays, sample_walks


def dense_graph(seed: int = 0, n_topics: int = 6, n_concepts: int = 12, n_docs: int = 400) -> ConceptGraph:
    """Random documents over a small vocabulary: every node has many neighbours of each kind."""
    rng = np.random.default_rng(seed)
    builder = ConceptGraphBuilder()
    for index in range(n_docs):
        topics = rng.choice(n_topics, size=rng.integers(2, 4), replace=False, p=None)
        builder.add_document(f"d{index}", [
            (f"topic {t}", [f"concept {c}" for c in rng.choice(n_concepts, size=rng.integers(5, 9), replace=False)])
            for t in topics])
    return builder.build()


def test_walks_have_the_exact_step_structure():
    graph = dense_graph()
    walks = sample_walks(graph, epochs=50, seed=3)
    assert len(walks) == 50 * graph.n_topics  # no dead ends in this graph: nothing dropped
    topic_lengths, concept_lengths = Counter(), Counter()
    for walk in walks:
        topic_lengths[len(walk.topics)] += 1
        concept_lengths[len(walk.concepts)] += 1
        assert walk.topics[0] == graph.topic_names[walk.walk_index % graph.n_topics]
        assert walk.epoch == walk.walk_index // graph.n_topics
        assert len(set(walk.topics)) == len(walk.topics) and len(set(walk.concepts)) == len(walk.concepts)
        topic_ids = [graph.topic_index[name] for name in walk.topics]
        concept_ids = [graph.concept_index[name] for name in walk.concepts]
        path = topic_ids + concept_ids
        for source, target in zip(path, path[1:]):
            assert graph.counts[source, target] > 0
        assert walk.nodes == walk.topics + walk.concepts
    assert set(topic_lengths) == {2, 3} and set(concept_lengths) == {4, 5}
    # 1-2 topic steps and 3-4 concept steps are equally likely
    assert abs(topic_lengths[2] - topic_lengths[3]) < 0.15 * len(walks)
    assert abs(concept_lengths[4] - concept_lengths[5]) < 0.15 * len(walks)


def test_first_step_frequencies_match_cooccurrence_proportions():
    graph = dense_graph(seed=1)
    arrays = sample_walk_arrays(graph, epochs=3000, seed=11)
    from_topic_zero = arrays.topic_path[arrays.topic_path[:, 0] == 0]
    observed = np.bincount(from_topic_zero[:, 1], minlength=graph.n_topics)[1:]
    expected_share = graph.counts[0, 1:graph.n_topics].toarray().ravel()
    expected = expected_share / expected_share.sum() * observed.sum()
    assert chisquare(observed, expected).pvalue > 0.001


def test_steps_after_a_visit_are_renormalised_over_unvisited_neighbours():
    # the second concept step from (c0 -> c1) must follow count(c1, v) over v not in {c0, c1}
    graph = dense_graph(seed=2)
    arrays = sample_walk_arrays(graph, epochs=4000, seed=5)
    paths = arrays.concept_path
    first, second = Counter(map(tuple, paths[:, :2].tolist())).most_common(1)[0][0]
    rows = paths[(paths[:, 0] == first) & (paths[:, 1] == second)]
    observed = np.bincount(rows[:, 2], minlength=graph.n_concepts)
    assert observed[first] == 0 and observed[second] == 0
    counts = graph.block("concept", "concept")[second].toarray().ravel().astype(float)
    counts[[first, second]] = 0
    candidates = counts > 0
    expected = counts[candidates] / counts.sum() * len(rows)
    assert chisquare(observed[candidates], expected).pvalue > 0.001


def test_same_seed_same_walks_whatever_the_batch_size():
    graph = dense_graph(seed=4)
    reference = sample_walk_arrays(graph, epochs=7, seed=42)
    for batch_size in (1, 5, 1000):
        other = sample_walk_arrays(graph, epochs=7, seed=42, batch_size=batch_size)
        np.testing.assert_array_equal(reference.walk_index, other.walk_index)
        np.testing.assert_array_equal(reference.topic_path, other.topic_path)
        np.testing.assert_array_equal(reference.concept_path, other.concept_path)
    different = sample_walk_arrays(graph, epochs=7, seed=43)
    assert not np.array_equal(reference.concept_path, different.concept_path)


def test_max_walks_is_a_seeded_subset_of_the_full_set():
    graph = dense_graph(seed=5)
    full = {walk.walk_index: walk for walk in sample_walks(graph, epochs=5, seed=9)}
    capped = sample_walks(graph, epochs=5, seed=9, max_walks=7)
    assert len(capped) == 7
    assert [w.walk_index for w in capped] == sorted(w.walk_index for w in capped)
    assert all(walk == full[walk.walk_index] for walk in capped)
    assert capped == sample_walks(graph, epochs=5, seed=9, max_walks=7)
    assert Walk.from_dict(capped[0].to_dict()) == capped[0]


def test_dead_end_rule():
    builder = ConceptGraphBuilder()
    # "lonely" has no topic neighbour; the concept chain a-b ends after one concept step
    builder.add_document("x", [("lonely", ["a", "b"])])
    # "empty" has neither topic neighbours nor concepts: its walks are dropped
    builder.add_document("y", [("empty", [])])
    graph = builder.build()
    walks = sample_walks(graph, epochs=20, seed=0)
    assert {tuple(w.topics) for w in walks} == {("lonely",)}
    assert len(walks) == 20
    assert {tuple(sorted(w.concepts)) for w in walks} == {("a", "b")}


def test_novelty_spreads_use_over_concepts():
    # a hub concept co-occurs everywhere; novelty lowers its share after the first epoch
    builder = ConceptGraphBuilder()
    rng = np.random.default_rng(0)
    for index in range(300):
        concepts = ["hub"] * 3 + [f"c{c}" for c in rng.choice(30, size=4, replace=False)]
        builder.add_document(f"d{index}", [(f"t{index % 10}", concepts), (f"t{(index + 1) % 10}", ["hub"])])
    graph = builder.build()
    plain = sample_walk_arrays(graph, epochs=30, seed=1)
    biased = sample_walk_arrays(graph, epochs=30, seed=1, novelty=2.0)
    hub = graph.concept_index["hub"] - graph.n_topics
    assert (biased.concept_path == hub).sum() < 0.8 * (plain.concept_path == hub).sum()
    assert graph.coverage(biased)["concepts"]["gini"] < graph.coverage(plain)["concepts"]["gini"]
    # epoch 0 has no earlier use: identical walks
    np.testing.assert_array_equal(plain.concept_path[:10], biased.concept_path[:10])


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        sample_walks(dense_graph(), epochs=-1)
