"""Coverage accounting: how often walks used each node and edge.

A node is used once per walk that visits it; an edge once per walk that
traverses it (consecutive topics, last topic → first concept, consecutive
concepts). Shares are over all nodes / all edges of the graph; the Gini
coefficient of use (0 = every node used equally, → 1 = all use on a few)
counts unused nodes and edges as zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .graph import ConceptGraph
from .walks import Walk, WalkArrays


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values.

    ``G = Σ_i (2i - n - 1) x_(i) / (n Σ x)`` with ``x`` sorted ascending and
    ``i = 1..n``; 0 when all values are equal (or all zero).

    Parameters
    ----------
    values : array-like of float

    Returns
    -------
    float
    """
    sorted_values = np.sort(np.asarray(values, dtype=np.float64))
    n, total = len(sorted_values), sorted_values.sum()
    if n == 0 or total == 0:
        return 0.0
    rank = np.arange(1, n + 1)
    return float(np.sum((2 * rank - n - 1) * sorted_values) / (n * total))


def walk_paths(graph: ConceptGraph, walks: list[Walk] | WalkArrays) -> np.ndarray:
    """Walks as rows of global node ids (topics then concepts, ``-1`` padding).

    Parameters
    ----------
    graph : ConceptGraph
    walks : list of Walk or WalkArrays

    Returns
    -------
    ndarray of int64, shape (n_walks, 8)
    """
    if isinstance(walks, WalkArrays):
        concepts = np.where(walks.concept_path >= 0, walks.concept_path.astype(np.int64) + graph.n_topics, -1)
        return np.hstack([walks.topic_path.astype(np.int64), concepts])
    paths = np.full((len(walks), 8), -1, dtype=np.int64)
    for row, walk in enumerate(walks):
        ids = [graph.topic_index[name] for name in walk.topics] + [graph.concept_index[name] for name in walk.concepts]
        paths[row, :len(walk.topics)] = ids[:len(walk.topics)]
        paths[row, 3:3 + len(walk.concepts)] = ids[len(walk.topics):]
    return paths


def usage(graph: ConceptGraph, walks: list[Walk] | WalkArrays) -> tuple[np.ndarray, np.ndarray]:
    """Per-node and per-edge use counts.

    Parameters
    ----------
    graph : ConceptGraph
    walks : list of Walk or WalkArrays

    Returns
    -------
    node_use : ndarray of int64, shape (n_nodes,)
    edge_use : ndarray of int64, shape (n_edges,)
        Aligned with the upper-triangle entries of ``graph.counts`` in CSR order.
    """
    paths = walk_paths(graph, walks)
    node_use = np.bincount(paths[paths >= 0], minlength=graph.n_nodes)
    # consecutive visited nodes; the padding between topics and concepts is skipped by compaction
    compact = np.full_like(paths, -1)
    valid = paths >= 0
    positions = np.cumsum(valid, axis=1) - 1
    compact[np.nonzero(valid)[0], positions[valid]] = paths[valid]
    source, target = compact[:, :-1].ravel(), compact[:, 1:].ravel()
    step = (source >= 0) & (target >= 0)
    low, high = np.minimum(source[step], target[step]), np.maximum(source[step], target[step])
    upper = graph.counts.tocoo()
    keep = upper.row < upper.col
    edge_key = upper.row[keep].astype(np.int64) * graph.n_nodes + upper.col[keep]
    order = np.argsort(edge_key)
    edge_position = order[np.searchsorted(edge_key[order], low * graph.n_nodes + high)]
    edge_use = np.bincount(edge_position, minlength=len(edge_key))
    return node_use, edge_use


def coverage_report(graph: ConceptGraph, walks: list[Walk] | WalkArrays) -> dict[str, Any]:
    """Share of nodes and edges the walks used, and the Gini coefficient of use.

    Parameters
    ----------
    graph : ConceptGraph
    walks : list of Walk or WalkArrays

    Returns
    -------
    dict
        ``{"walks": n, "topics": {...}, "concepts": {...}, "nodes": {...}, "edges": {...}}``;
        each part has ``total``, ``used``, ``share`` and ``gini``; ``concepts``
        also lists the ``most_used`` ones.
    """
    node_use, edge_use = usage(graph, walks)

    def part(values: np.ndarray) -> dict[str, Any]:
        used = int(np.count_nonzero(values))
        return {"total": len(values), "used": used, "share": used / len(values) if len(values) else 0.0,
                "gini": gini(values)}

    concept_use = node_use[graph.n_topics:]
    most_used = np.lexsort((np.arange(len(concept_use)), -concept_use))[:10]
    concepts = part(concept_use)
    concepts["most_used"] = [{"name": graph.concept_names[i], "walks": int(concept_use[i])}
                             for i in most_used if concept_use[i] > 0]
    return {"walks": len(walks), "topics": part(node_use[:graph.n_topics]), "concepts": concepts,
            "nodes": part(node_use), "edges": part(edge_use)}
