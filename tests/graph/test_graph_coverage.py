"""Coverage accounting on a hand-computed case."""

from __future__ import annotations

import pytest

from synthllm.graph import ConceptGraphBuilder, Walk, gini, sample_walk_arrays, usage


def test_gini_hand_computed():
    # sorted [0, 0, 1, 3]: sum (2i - n - 1) x_i = 1*1 + 3*3 = 10; / (n * total) = 10 / 16
    assert gini([3, 0, 1, 0]) == pytest.approx(0.625)
    assert gini([2, 2, 2]) == 0.0
    assert gini([0, 0]) == 0.0
    assert gini([0, 0, 0, 5]) == pytest.approx(0.75)


def test_coverage_hand_computed():
    builder = ConceptGraphBuilder()
    builder.add_document("d1", [("t1", ["a", "b"]), ("t2", ["c"])])
    graph = builder.build()
    # nodes: t1, t2, a, b, c (5); edges: all pairs of 5 nodes in one document = 10
    walks = [Walk(topics=["t1", "t2"], concepts=["c", "a"], walk_index=0),
             Walk(topics=["t2", "t1"], concepts=["a", "b"], walk_index=1)]
    node_use, edge_use = usage(graph, walks)
    names = graph.node_names
    assert dict(zip(names, node_use.tolist())) == {"t1": 2, "t2": 2, "a": 2, "b": 1, "c": 1}
    # edges used: t1-t2 (twice), t2-c, c-a, t1-a, a-b -> 5 distinct of 10, uses [2,1,1,1,1,0,0,0,0,0]
    assert sorted(edge_use.tolist(), reverse=True) == [2, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    report = graph.coverage(walks)
    assert report["walks"] == 2
    assert report["nodes"] == {"total": 5, "used": 5, "share": 1.0, "gini": pytest.approx(gini([2, 2, 2, 1, 1]))}
    assert report["edges"]["used"] == 5 and report["edges"]["share"] == 0.5
    assert report["edges"]["gini"] == pytest.approx(gini([2, 1, 1, 1, 1, 0, 0, 0, 0, 0]))
    assert report["concepts"]["used"] == 3 and report["concepts"]["most_used"][0] == {"name": "a", "walks": 2}
    assert report["topics"]["share"] == 1.0


def test_coverage_of_arrays_equals_coverage_of_walk_objects(small_graph):
    arrays = sample_walk_arrays(small_graph, epochs=4, seed=2)
    assert small_graph.coverage(arrays) == small_graph.coverage(arrays.to_walks(small_graph))
