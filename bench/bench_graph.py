"""Benchmark of the concept graph: build and walks against pure-Python/networkx baselines.

Generates a Zipf-shaped corpus of documents' concept sets (1M documents by
default, about 5M distinct co-occurring pairs), then measures in this one
process:

- build: ``ConceptGraphBuilder.add_encoded`` + ``build`` (counting included)
  vs ``networkx.Graph.add_weighted_edges_from`` on the already-counted pairs
  (the baseline does not even count); peak traced memory of our build;
- ingest: ``add_document`` (per-document, canonicalising strings) on a subset;
- walks: ``sample_walk_arrays`` (5 epochs) vs a straightforward pure-Python
  adjacency-dict walker of the same algorithm (``random.choices`` over the
  unvisited neighbours) and vs a tuned pure-Python walker (per-node cumulative
  lists + ``bisect``), each on a subset of start topics; walks per second on one core.

Rates are CPU seconds of this process (the machine is shared; wall time is printed too).

Usage::

    nice -n 5 python bench/bench_graph.py            # full size
    nice -n 5 python bench/bench_graph.py --docs 100000
    nice -n 5 python bench/bench_graph.py --build-only   # corpus, build and networkx only
"""

from __future__ import annotations

import os

# one core: the figures are per core
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import argparse
import bisect
import gc
import random
import time
import tracemalloc
from collections.abc import Callable

import networkx as nx
import numpy as np
from scipy import sparse

from synthllm.graph import ConceptGraphBuilder, sample_walk_arrays, sample_walks


def zipf_choice(rng: np.random.Generator, n_items: int, exponent: float, size: int) -> np.ndarray:
    """Draw item ranks 0..n_items-1 with probability ∝ (rank + 1)^-exponent."""
    cumulative = np.cumsum(np.arange(1, n_items + 1, dtype=np.float64) ** -exponent)
    return np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right").clip(0, n_items - 1)


def generate_corpus(n_docs: int, seed: int = 0, n_topic_vocab: int = 30_000, n_concept_vocab: int = 200_000):
    """A Zipf-shaped corpus: 1–2 topics per document, 1–3 key concepts per topic.

    Key concepts are drawn mostly from a topic-specific window of the
    vocabulary (so topics have their own concepts) and sometimes globally.

    Returns
    -------
    doc_ids, topic_names, concept_names, topic_indptr, topic_indices, concept_indptr, concept_indices
    """
    rng = np.random.default_rng(seed)
    topics_per_doc = 1 + (rng.random(n_docs) < 0.45)
    topic_indptr = np.concatenate(([0], np.cumsum(topics_per_doc)))
    topic_indices = zipf_choice(rng, n_topic_vocab, 1.05, int(topic_indptr[-1]))
    concepts_per_topic = rng.integers(1, 4, size=len(topic_indices))
    concept_topic = np.repeat(topic_indices, concepts_per_topic)
    local_rank = zipf_choice(rng, 3_000, 1.1, len(concept_topic))
    global_rank = zipf_choice(rng, n_concept_vocab, 1.0, len(concept_topic))
    concept_indices = np.where(rng.random(len(concept_topic)) < 0.75,
                               (concept_topic * 7919 + local_rank) % n_concept_vocab, global_rank)
    concepts_per_doc = np.add.reduceat(concepts_per_topic, topic_indptr[:-1])
    concept_indptr = np.concatenate(([0], np.cumsum(concepts_per_doc)))
    doc_ids = [f"doc{index:07d}" for index in range(n_docs)]
    topic_names = [f"topic {index}" for index in range(n_topic_vocab)]
    concept_names = [f"concept {index}" for index in range(n_concept_vocab)]
    return doc_ids, topic_names, concept_names, topic_indptr, topic_indices, concept_indptr, concept_indices


def build_graph(corpus):
    builder = ConceptGraphBuilder()
    builder.add_encoded(*corpus)
    return builder.build()


def python_walker(adjacency, starts: list[int], seed: int) -> list[tuple[list[int], list[int]]]:
    """The same walk algorithm on dict-of-dict adjacency, one random.choices per step."""
    topic_topic, topic_concept, concept_concept = adjacency
    rng = random.Random(seed)
    walks = []
    for start in starts:
        topics = [start]
        current = start
        for _ in range(rng.choice((1, 2))):
            neighbours = [(v, w) for v, w in topic_topic.get(current, {}).items() if v not in topics]
            if not neighbours:
                break
            current = rng.choices([v for v, _ in neighbours], weights=[w for _, w in neighbours])[0]
            topics.append(current)
        neighbours = list(topic_concept.get(current, {}).items())
        if not neighbours:
            continue
        current = rng.choices([v for v, _ in neighbours], weights=[w for _, w in neighbours])[0]
        concepts = [current]
        for _ in range(rng.choice((3, 4))):
            neighbours = [(v, w) for v, w in concept_concept.get(current, {}).items() if v not in concepts]
            if not neighbours:
                break
            current = rng.choices([v for v, _ in neighbours], weights=[w for _, w in neighbours])[0]
            concepts.append(current)
        walks.append((topics, concepts))
    return walks


def bisect_walker(tables, starts: list[int], seed: int) -> list[tuple[list[int], list[int]]]:
    """The same walk on per-node (neighbours, cumulative counts) lists: bisect, redraw on a visit.

    A tuned pure-Python baseline: O(log degree) per step instead of O(degree).
    After 20 draws that all hit visited nodes it falls back to filtering.
    """
    rng = random.Random(seed)

    def step(table, node, visited):
        entry = table.get(node)
        if entry is None:
            return None
        neighbours, cumulative = entry
        for _ in range(20):
            candidate = neighbours[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]
            if candidate not in visited:
                return candidate
        free = [(v, c - (cumulative[i - 1] if i else 0)) for i, (v, c) in enumerate(zip(neighbours, cumulative))
                if v not in visited]
        return rng.choices([v for v, _ in free], weights=[w for _, w in free])[0] if free else None

    topic_topic, topic_concept, concept_concept = tables
    walks = []
    for start in starts:
        topics = [start]
        current = start
        for _ in range(rng.choice((1, 2))):
            following = step(topic_topic, current, topics)
            if following is None:
                break
            current = following
            topics.append(current)
        current = step(topic_concept, current, ())
        if current is None:
            continue
        concepts = [current]
        for _ in range(rng.choice((3, 4))):
            current = step(concept_concept, current, concepts)
            if current is None:
                break
            concepts.append(current)
        walks.append((topics, concepts))
    return walks


def cumulative_lists(matrix: sparse.csr_matrix) -> dict[int, tuple[list[int], list[int]]]:
    cumulative = np.cumsum(matrix.data.astype(np.int64))
    tables = {}
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        if end > start:
            offset = cumulative[start - 1] if start else 0
            tables[row] = (matrix.indices[start:end].tolist(), (cumulative[start:end] - offset).tolist())
    return tables


def dict_adjacency(matrix: sparse.csr_matrix) -> dict[int, dict[int, int]]:
    return {row: dict(zip(matrix.indices[matrix.indptr[row]:matrix.indptr[row + 1]].tolist(),
                          matrix.data[matrix.indptr[row]:matrix.indptr[row + 1]].tolist()))
            for row in range(matrix.shape[0]) if matrix.indptr[row + 1] > matrix.indptr[row]}


def timed(function: Callable[[], object]) -> tuple[object, float, float]:
    """Run ``function``; return its result, CPU seconds of this process and wall seconds.

    The machine is shared, so CPU time is the per-core figure; wall time is printed too.
    """
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def ingest_rate(corpus, n_ingest: int) -> None:
    """Print the per-document ``add_document`` rate on the first ``n_ingest`` documents."""
    doc_ids, topic_names, concept_names, topic_indptr, topic_indices, concept_indptr, concept_indices = corpus
    documents = [(doc_ids[i], [(topic_names[t], [concept_names[c] for c in concept_indices[
        concept_indptr[i]:concept_indptr[i + 1]]]) for t in topic_indices[topic_indptr[i]:topic_indptr[i + 1]]])
        for i in range(n_ingest)]
    _, ingest_cpu, _ = timed(lambda: ConceptGraphBuilder().add_records(documents))
    print(f"add_document: {n_ingest / ingest_cpu:,.0f} documents/s CPU ({n_ingest} documents)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000, help="documents in the generated corpus")
    parser.add_argument("--epochs", type=int, default=5, help="walk epochs for our sampler")
    parser.add_argument("--baseline-walks", type=int, default=5_000, help="walks for the pure-Python walker")
    parser.add_argument("--bisect-walks", type=int, default=50_000, help="walks for the tuned bisect walker")
    parser.add_argument("--ingest-docs", type=int, default=100_000, help="documents for the add_document rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--build-only", action="store_true", help="stop after the build against networkx")
    args = parser.parse_args()

    started = time.perf_counter()
    corpus = generate_corpus(args.docs, args.seed)
    print(f"corpus: {args.docs} documents, generated in {time.perf_counter() - started:.1f} s")

    graph, build_cpu, build_wall = timed(lambda: build_graph(corpus))
    edges = graph.edge_counts()
    n_pairs = sum(edges.values())
    print(f"graph: {graph.n_topics} topics, {graph.n_concepts} concepts, {n_pairs} distinct pairs {edges}")
    print(f"build (add_encoded + count + CSR): {build_cpu:.2f} s CPU ({build_wall:.2f} s wall)")

    tracemalloc.start()
    build_graph(corpus)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"build peak traced memory: {peak / 2**20:.0f} MiB")

    if not args.build_only:
        ingest_rate(corpus, min(args.ingest_docs, args.docs))

    upper = sparse.triu(graph.weights, k=1).tocoo()
    pairs = list(zip(upper.row.tolist(), upper.col.tolist(), upper.data.tolist()))
    del upper
    gc.collect()
    resident_before = resident_mib()
    nx_graph = nx.Graph()
    _, nx_cpu, nx_wall = timed(lambda: nx_graph.add_weighted_edges_from(pairs))
    nx_mib = resident_mib() - resident_before
    print(f"networkx add_weighted_edges_from ({len(pairs)} pairs): {nx_cpu:.2f} s CPU ({nx_wall:.2f} s wall), "
          f"+{nx_mib:.0f} MiB resident")
    print(f"build speed-up vs networkx: {nx_cpu / build_cpu:.1f}x (CPU time)")
    del nx_graph, pairs
    if args.build_only:
        return

    attempted = graph.n_topics * args.epochs
    walk_arrays, cold_cpu, cold_wall = timed(lambda: sample_walk_arrays(graph, epochs=args.epochs, seed=args.seed))
    print(f"sample_walk_arrays, first call (builds the transition tables): {attempted} walks started "
          f"({len(walk_arrays)} kept) in {cold_cpu:.2f} s CPU ({cold_wall:.2f} s wall) "
          f"= {attempted / cold_cpu:,.0f} walks/s per core")
    _, walk_cpu, walk_wall = timed(lambda: sample_walk_arrays(graph, epochs=args.epochs, seed=args.seed))
    ours_rate = attempted / walk_cpu
    print(f"sample_walk_arrays, tables built: {walk_cpu:.2f} s CPU ({walk_wall:.2f} s wall) "
          f"= {ours_rate:,.0f} walks/s per core")
    _, objects_cpu, _ = timed(lambda: sample_walks(graph, epochs=args.epochs, seed=args.seed))
    print(f"sample_walks (Walk objects with names): {attempted / objects_cpu:,.0f} walks/s per core")
    report = graph.coverage(walk_arrays)
    print("coverage: " + ", ".join(f"{part} {report[part]['share']:.1%} used (gini {report[part]['gini']:.3f})"
                                   for part in ("topics", "concepts", "edges")))

    adjacency = tuple(dict_adjacency(graph.block(*kinds)) for kinds in
                      (("topic", "topic"), ("topic", "concept"), ("concept", "concept")))
    starts = np.random.default_rng(args.seed).integers(0, graph.n_topics, args.baseline_walks).tolist()
    _, python_cpu, _ = timed(lambda: python_walker(adjacency, starts, args.seed))
    python_rate = len(starts) / python_cpu
    print(f"pure-Python dict walker: {python_rate:,.0f} walks/s per core ({len(starts)} walks)")
    print(f"walk speed-up vs pure Python: {ours_rate / python_rate:.1f}x")
    del adjacency
    tables = tuple(cumulative_lists(block) for block in graph.walk_blocks)
    bisect_starts = np.random.default_rng(args.seed).integers(0, graph.n_topics, args.bisect_walks).tolist()
    _, bisect_cpu, _ = timed(lambda: bisect_walker(tables, bisect_starts, args.seed))
    bisect_rate = len(bisect_starts) / bisect_cpu
    print(f"tuned pure-Python bisect walker: {bisect_rate:,.0f} walks/s per core ({len(bisect_starts)} walks)")
    print(f"walk speed-up vs tuned pure Python: {ours_rate / bisect_rate:.1f}x")


if __name__ == "__main__":
    main()
