"""Seeded, vectorised random walks over the concept graph (SynthLLM Level-3).

One walk ("concept combination" K_g):

1. start at a topic;
2. take 1 or 2 steps (equally likely) on the topic–topic edges;
3. take one step topic → key concept;
4. take 3 or 4 steps (equally likely) on the key-concept edges.

Each step goes from node ``u`` to a neighbour ``v`` of the step's edge type
with probability ``count(u, v) / Σ count(u, v')`` over the neighbours not yet
visited by this walk (no revisits; topics and concepts are checked separately).
This equals the paper's softmax of ``log(count + ε)`` up to ε.

Dead-end rule (ours): a topic step that finds no unvisited topic neighbour ends
the topic phase early and the walk goes on with the topic → concept step from
the topic where it stands; a concept step that finds no unvisited neighbour
ends the walk with the concepts gathered so far; a walk whose topic → concept
step finds no key concept has no concepts and is dropped. So every returned
walk has 1–3 topics and 1–5 concepts, and exactly 2–3 topics and 4–5 concepts
when it met no dead end.

Epoch ``e`` starts one walk from every topic: walk index ``e * n_topics + t``
starts at topic ``t``. Every random number a walk uses is a pure function of
``(seed, walk index, slot)`` (a counter-addressed SplitMix64 stream), so a walk
is the same whatever the batch size, the number of epochs or ``max_walks``.
Sampling is CSR cumulative sums + ``searchsorted`` (on sorted targets); a draw that lands on a
visited node is redrawn exactly among the unvisited ones by skipping the
visited nodes' mass (rejection then exact fallback, which keeps the
conditional distribution exact).

Novelty bias (off by default): with ``novelty = λ > 0`` the probability of
moving to ``v`` is multiplied by ``(1 + use(v))^-λ`` where ``use(v)`` counts
the walks of earlier epochs (of the same call) that visited ``v``. Walks within
one epoch stay independent, so results still do not depend on the batch size.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from .graph import ConceptGraph

MAX_TOPIC_STEPS = 2
MAX_CONCEPT_STEPS = 4
_N_SLOTS = 16  # uniforms per walk: 2 step counts + 7 steps x (first draw, exact redraw)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# unbiased transition tables per graph, reused by later calls on the same graph
_TABLE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class Walk:
    """One sampled concept combination.

    Attributes
    ----------
    topics : list of str
        Canonical topic names in visit order (the first is the start topic).
    concepts : list of str
        Canonical key-concept names in visit order.
    walk_index : int
        ``epoch * n_topics + start topic id``; identifies the walk for a seed.
    epoch : int
        The epoch the walk belongs to.
    """

    topics: list[str]
    concepts: list[str]
    walk_index: int
    epoch: int = 0

    @property
    def nodes(self) -> list[str]:
        """Topics then concepts."""
        return self.topics + self.concepts

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with every field."""
        return {"walk_index": self.walk_index, "epoch": self.epoch, "topics": list(self.topics),
                "concepts": list(self.concepts)}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Walk:
        """The inverse of :meth:`to_dict`."""
        return cls(topics=list(record["topics"]), concepts=list(record["concepts"]),
                   walk_index=int(record["walk_index"]), epoch=int(record.get("epoch", 0)))


@dataclass
class WalkArrays:
    """Walks as arrays (the fast form), one row per walk, ``-1`` padding.

    Attributes
    ----------
    walk_index : ndarray of int64, shape (n,)
    topic_path : ndarray of int32, shape (n, 3)
        Topic node ids in visit order.
    concept_path : ndarray of int32, shape (n, 5)
        Key-concept ids **local to the concepts** (node id minus ``n_topics``).
    n_topics : int
        The graph's topic count (to turn walk indices into epochs).
    """

    walk_index: np.ndarray
    topic_path: np.ndarray
    concept_path: np.ndarray
    n_topics: int = field(default=1)

    def __len__(self) -> int:
        return len(self.walk_index)

    def to_walks(self, graph: ConceptGraph) -> list[Walk]:
        """Convert to :class:`Walk` objects with names from ``graph``."""
        topic_names, concept_names = graph.topic_names, graph.concept_names
        walks = []
        for index, topic_row, concept_row in zip(self.walk_index.tolist(), self.topic_path.tolist(),
                                                 self.concept_path.tolist()):
            walks.append(Walk(topics=[topic_names[t] for t in topic_row if t >= 0],
                              concepts=[concept_names[c] for c in concept_row if c >= 0],
                              walk_index=index, epoch=index // self.n_topics))
        return walks


def _row_search(sorted_values: np.ndarray, start: np.ndarray, end: np.ndarray, target: np.ndarray) -> np.ndarray:
    """For each row, the last position ``k`` in ``[start, end)`` with ``sorted_values[k] <= target``.

    A binary search confined to each row's own range (for arrays sorted only
    within rows, like CSR column indices), run for all rows at once. Clamped to
    ``start`` when every value of the row exceeds the target. Rows must be
    non-empty.
    """
    low, high = start.copy(), end - 1
    rounds = int(np.ceil(np.log2(max(int((end - start).max(initial=1)), 1)))) + 1
    for _ in range(rounds):
        middle = (low + high + 1) >> 1
        right = sorted_values[middle] <= target
        low = np.where(right, middle, low)
        high = np.where(right, high, middle - 1)
    return low


def _cdf_search(cumulative: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Entry ``k`` with ``cumulative[k] <= target < cumulative[k + 1]`` for each target.

    The targets are sorted first: ``searchsorted`` over ascending keys walks
    memory in order, about twice as fast as random keys on large graphs.
    """
    order = np.argsort(target)
    position = np.empty(len(target), dtype=np.int64)
    position[order] = np.searchsorted(cumulative, target[order], side="right") - 1
    return position


class _Transitions:
    """One edge type as CSR with cumulative weights, for inverse-CDF sampling."""

    def __init__(self, counts: sparse.csr_matrix, column_factor: np.ndarray | None = None) -> None:
        self.indptr = counts.indptr.astype(np.int64)
        self.indices = counts.indices
        weights = counts.data.astype(np.float64)
        if column_factor is not None:
            weights = weights * column_factor[self.indices]
        self.cumulative = np.concatenate(([0.0], np.cumsum(weights)))

    def step(self, rows: np.ndarray, first: np.ndarray, redraw: np.ndarray,
             visited: np.ndarray | None) -> np.ndarray:
        """Next node for each walk (``-1`` at a dead end).

        Parameters
        ----------
        rows : ndarray of int64
            Current node of each walk (row of this edge type).
        first, redraw : ndarray of float64
            Uniforms in [0, 1): the first draw, and the exact redraw used when
            the first one hits a visited node.
        visited : ndarray of int64, shape (n, m), optional
            Visited nodes in this edge type's column space (``-1`` = none).
        """
        chosen = np.full(len(rows), -1, dtype=np.int64)
        live = np.nonzero(self.indptr[rows + 1] > self.indptr[rows])[0]
        rows = rows[live]
        start, end = self.indptr[rows], self.indptr[rows + 1]
        base = self.cumulative[start]
        target = base + first[live] * (self.cumulative[end] - base)
        chosen[live] = self.indices[np.clip(_cdf_search(self.cumulative, target), start, end - 1)]
        if visited is None or visited.shape[1] == 0 or not len(live):
            return chosen
        hit = (chosen[live, None] == visited[live]).any(axis=1)
        if hit.any():
            chosen[live[hit]] = self._exact(rows[hit], redraw[live[hit]], visited[live[hit]])
        return chosen

    def _exact(self, rows: np.ndarray, uniform: np.ndarray, visited: np.ndarray) -> np.ndarray:
        """Sample among unvisited neighbours exactly by skipping the visited entries' mass."""
        start, end = self.indptr[rows], self.indptr[rows + 1]
        base = self.cumulative[start]
        total = self.cumulative[end] - base
        n_visited = visited.shape[1]
        # where each visited node sits in the row (column indices are sorted within a row)
        entry = _row_search(self.indices, np.repeat(start, n_visited), np.repeat(end, n_visited),
                            visited.ravel()).reshape(visited.shape)
        present = (visited >= 0) & (self.indices[entry] == visited)
        mass = np.where(present, self.cumulative[entry + 1] - self.cumulative[entry], 0.0)
        available = total - mass.sum(axis=1)
        # visited entries in increasing position; absent ones sort last and never shift
        order = np.argsort(np.where(present, entry, np.iinfo(np.int64).max), axis=1)
        entry_sorted = np.take_along_axis(entry, order, axis=1)
        present_sorted = np.take_along_axis(present, order, axis=1)
        mass_sorted = np.take_along_axis(mass, order, axis=1)
        target = base + uniform * available
        for column in range(n_visited):
            # an excluded entry starting at or before the target pushes the target past its mass
            shift = present_sorted[:, column] & (self.cumulative[entry_sorted[:, column]] <= target)
            target = np.where(shift, target + mass_sorted[:, column], target)
        position = np.clip(_cdf_search(self.cumulative, target), start, end - 1)
        return np.where(available > total * 1e-12, self.indices[position], -1)


def walk_uniforms(key: np.uint64, walk_index: np.ndarray, slot: int) -> np.ndarray:
    """Uniform [0, 1) numbers addressed by (stream key, walk index, slot).

    Output ``walk_index * 16 + slot + 1`` of the SplitMix64 generator started
    at ``key``: a counter-based stream, so any walk's numbers can be computed
    without drawing anyone else's.

    Parameters
    ----------
    key : numpy.uint64
        Stream key (from :func:`seed_key`).
    walk_index : ndarray of int64
    slot : int
        Which of the walk's 16 numbers.

    Returns
    -------
    ndarray of float64
    """
    counter = walk_index.astype(np.uint64) * np.uint64(_N_SLOTS) + np.uint64(slot + 1)
    with np.errstate(over="ignore"):
        z = key + counter * _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def seed_key(seed: int) -> np.uint64:
    """The SplitMix64 stream key of a seed (via numpy's SeedSequence hashing)."""
    return np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0]


def select_walk_indices(n_topics: int, epochs: int, seed: int, max_walks: int | None) -> np.ndarray:
    """The walk indices an epoch count and ``max_walks`` cap select, in increasing order.

    Without a cap every index ``0 .. epochs * n_topics - 1``; with a cap the
    first ``max_walks`` of a permutation seeded by ``seed``.

    Parameters
    ----------
    n_topics, epochs, seed : int
    max_walks : int, optional

    Returns
    -------
    ndarray of int64
    """
    total = n_topics * epochs
    if max_walks is None or max_walks >= total:
        return np.arange(total, dtype=np.int64)
    permutation = np.random.Generator(np.random.Philox(seed)).permutation(total)
    return np.sort(permutation[:max(max_walks, 0)]).astype(np.int64)


def _walk_batch(tables: tuple[_Transitions, _Transitions, _Transitions], key: np.uint64,
                walk_index: np.ndarray, n_topics: int) -> WalkArrays:
    """Run the walks of one batch (see the module docstring for the step structure)."""
    topic_topic, topic_concept, concept_concept = tables
    n = len(walk_index)
    topic_steps = 1 + (walk_uniforms(key, walk_index, 0) < 0.5)
    concept_steps = 3 + (walk_uniforms(key, walk_index, 1) < 0.5)
    topic_path = np.full((n, MAX_TOPIC_STEPS + 1), -1, dtype=np.int64)
    concept_path = np.full((n, MAX_CONCEPT_STEPS + 1), -1, dtype=np.int64)
    current = walk_index % n_topics
    topic_path[:, 0] = current
    in_topic_phase = np.ones(n, dtype=bool)
    slot = 2
    for step in range(MAX_TOPIC_STEPS):
        active = np.nonzero(in_topic_phase & (topic_steps > step))[0]
        chosen = topic_topic.step(current[active], walk_uniforms(key, walk_index[active], slot),
                                  walk_uniforms(key, walk_index[active], slot + 1), topic_path[active, :step + 1])
        moved = chosen >= 0
        topic_path[active[moved], step + 1] = chosen[moved]
        current[active[moved]] = chosen[moved]
        in_topic_phase[active[~moved]] = False
        slot += 2
    current = topic_concept.step(current, walk_uniforms(key, walk_index, slot),
                                 walk_uniforms(key, walk_index, slot + 1), None)
    concept_path[:, 0] = current
    walking = current >= 0
    slot += 2
    for step in range(MAX_CONCEPT_STEPS):
        active = np.nonzero(walking & (concept_steps > step))[0]
        chosen = concept_concept.step(current[active], walk_uniforms(key, walk_index[active], slot),
                                      walk_uniforms(key, walk_index[active], slot + 1),
                                      concept_path[active, :step + 1])
        moved = chosen >= 0
        concept_path[active[moved], step + 1] = chosen[moved]
        current[active[moved]] = chosen[moved]
        walking[active[~moved]] = False
        slot += 2
    kept = concept_path[:, 0] >= 0
    return WalkArrays(walk_index[kept], topic_path[kept].astype(np.int32), concept_path[kept].astype(np.int32),
                      n_topics)


def sample_walk_arrays(graph: ConceptGraph, epochs: int = 5, seed: int = 0, max_walks: int | None = None,
                       novelty: float = 0.0, batch_size: int = 1 << 16) -> WalkArrays:
    """Sample walks and return them as arrays (the fast path behind :func:`sample_walks`).

    Parameters
    ----------
    graph : ConceptGraph
    epochs : int, default 5
        Walks started from every topic.
    seed : int, default 0
    max_walks : int, optional
        Keep at most this many walks (a seeded subset of walk indices).
    novelty : float, default 0.0
        Strength λ of the bias toward topics and concepts that earlier epochs used less.
    batch_size : int, default 65536
        Walks processed together (memory bound only; results do not depend on it).

    Returns
    -------
    WalkArrays
        Walks in increasing walk index; dropped walks (no key concept reachable) absent.
    """
    if epochs < 0 or batch_size < 1 or novelty < 0:
        raise ValueError("epochs and novelty must be >= 0 and batch_size >= 1")
    key = seed_key(seed)
    indices = select_walk_indices(graph.n_topics, epochs, seed, max_walks)
    blocks = graph.walk_blocks
    if novelty > 0:
        # one group per epoch: each epoch's weights depend on the use by the epochs before it
        groups = [indices[(indices // max(graph.n_topics, 1)) == epoch] for epoch in range(epochs)]
    else:
        groups = [indices]
    topic_use = np.zeros(graph.n_topics)
    concept_use = np.zeros(graph.n_concepts)
    results = []
    for group in groups:
        if novelty > 0:
            topic_factor = (1.0 + topic_use) ** -novelty
            concept_factor = (1.0 + concept_use) ** -novelty
            tables = (_Transitions(blocks[0], topic_factor), _Transitions(blocks[1], concept_factor),
                      _Transitions(blocks[2], concept_factor))
        else:
            tables = _TABLE_CACHE.get(graph)
            if tables is None:
                tables = _TABLE_CACHE[graph] = tuple(_Transitions(block) for block in blocks)
        for start in range(0, len(group), batch_size):
            batch = _walk_batch(tables, key, group[start:start + batch_size], graph.n_topics)
            results.append(batch)
            if novelty > 0:
                topic_use += np.bincount(batch.topic_path[batch.topic_path >= 0], minlength=graph.n_topics)
                concept_use += np.bincount(batch.concept_path[batch.concept_path >= 0],
                                           minlength=graph.n_concepts)
    if not results:
        empty = np.zeros((0, 0), dtype=np.int32)
        return WalkArrays(np.zeros(0, dtype=np.int64), empty.reshape(0, MAX_TOPIC_STEPS + 1),
                          empty.reshape(0, MAX_CONCEPT_STEPS + 1), max(graph.n_topics, 1))
    return WalkArrays(np.concatenate([r.walk_index for r in results]),
                      np.concatenate([r.topic_path for r in results]),
                      np.concatenate([r.concept_path for r in results]), max(graph.n_topics, 1))


def sample_walks(graph: ConceptGraph, epochs: int = 5, seed: int = 0, max_walks: int | None = None,
                 novelty: float = 0.0, batch_size: int = 1 << 16) -> list[Walk]:
    """Sample Level-3 concept combinations by seeded random walks.

    Parameters
    ----------
    graph : ConceptGraph
    epochs : int, default 5
        One walk from every topic per epoch (the paper ran 5).
    seed : int, default 0
        Same seed, same walks (independently of ``batch_size``).
    max_walks : int, optional
        At most this many walks: a seeded subset of the walk indices, each walk
        identical to the one it would be without the cap.
    novelty : float, default 0.0
        Bias toward topics and concepts earlier epochs used less (0 = the paper's walk).
    batch_size : int, default 65536
        Walks vectorised together.

    Returns
    -------
    list of Walk
        In increasing ``walk_index``.
    """
    return sample_walk_arrays(graph, epochs, seed, max_walks, novelty, batch_size).to_walks(graph)
