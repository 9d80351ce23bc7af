"""The concept graph: sparse co-occurrence counts over topic and key-concept nodes.

Node ids: ``0 .. n_topics-1`` are topics, ``n_topics .. n_nodes-1`` are key
concepts (KCs), each range sorted by canonical name. ``counts`` is the
symmetric node × node matrix of co-occurrence counts (number of documents in
which both nodes occur) with an empty diagonal; its three blocks are the
topic–topic, topic–KC and KC–KC edge types. ``incidence`` is the document ×
node matrix used for reference-document retrieval.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

if TYPE_CHECKING:
    from .retrieval import NameIndex
    from .walks import Walk, WalkArrays

FORMAT_VERSION = 1
_ARRAYS_FILE = "graph.npz"
_META_FILE = "graph.json"


class ConceptGraph:
    """A built concept graph (see the module docstring for the layout).

    Parameters
    ----------
    topic_names, concept_names : list of str
        Canonical names, each sorted; node ``i < n_topics`` is
        ``topic_names[i]``, node ``n_topics + j`` is ``concept_names[j]``.
    doc_ids : list of str
        Document ids in sorted order (rows of ``incidence``).
    counts : scipy.sparse.csr_matrix
        Symmetric co-occurrence counts, zero diagonal, sorted indices.
    incidence : scipy.sparse.csr_matrix
        Binary document × node matrix.
    document_frequency : ndarray
        Number of documents holding each node.
    epsilon : float
        ε of the edge weight ``log(count + ε)``.
    synonyms : dict, optional
        ``{"topics": {variant: representative}, "concepts": {...}}`` from the
        near-synonym merge (empty maps when none was done).
    """

    def __init__(self, topic_names: list[str], concept_names: list[str], doc_ids: list[str],
                 counts: sparse.csr_matrix, incidence: sparse.csr_matrix, document_frequency: np.ndarray,
                 epsilon: float = 1e-6, synonyms: dict[str, dict[str, str]] | None = None) -> None:
        self.topic_names = list(topic_names)
        self.concept_names = list(concept_names)
        self.doc_ids = list(doc_ids)
        self.counts = counts
        self.incidence = incidence
        self.document_frequency = np.asarray(document_frequency, dtype=np.int64)
        self.epsilon = float(epsilon)
        self.synonyms = synonyms or {"topics": {}, "concepts": {}}

    # ----------------------------------------------------------------- sizes
    @property
    def n_topics(self) -> int:
        """Number of topic nodes."""
        return len(self.topic_names)

    @property
    def n_concepts(self) -> int:
        """Number of key-concept nodes."""
        return len(self.concept_names)

    @property
    def n_nodes(self) -> int:
        """Number of nodes (topics + key concepts)."""
        return self.n_topics + self.n_concepts

    @property
    def n_documents(self) -> int:
        """Number of documents the graph was built from."""
        return len(self.doc_ids)

    @property
    def node_names(self) -> list[str]:
        """Names of all nodes in id order (topics, then key concepts)."""
        return self.topic_names + self.concept_names

    @cached_property
    def topic_index(self) -> dict[str, int]:
        """Topic name → node id."""
        return {name: index for index, name in enumerate(self.topic_names)}

    @cached_property
    def concept_index(self) -> dict[str, int]:
        """Key-concept name → node id (offset by ``n_topics``)."""
        return {name: self.n_topics + index for index, name in enumerate(self.concept_names)}

    # ----------------------------------------------------------------- edges
    @property
    def weights(self) -> sparse.csr_matrix:
        """Edge weights ``log(count + ε)`` on the edges of ``counts``."""
        weights = self.counts.astype(np.float64)
        weights.data = np.log(weights.data + self.epsilon)
        return weights

    def block(self, source: str, target: str) -> sparse.csr_matrix:
        """One edge type's counts: rows of ``source`` kind, columns of ``target`` kind.

        Parameters
        ----------
        source, target : {"topic", "concept"}
            Node kinds. Column ids of the returned matrix are local to the
            target kind (a key concept's column is its id minus ``n_topics``).

        Returns
        -------
        scipy.sparse.csr_matrix
        """
        spans = {"topic": slice(0, self.n_topics), "concept": slice(self.n_topics, self.n_nodes)}
        result = self.counts[spans[source]][:, spans[target]].tocsr()
        result.sort_indices()
        return result

    @cached_property
    def walk_blocks(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix, sparse.csr_matrix]:
        """The topic–topic, topic–concept and concept–concept count blocks (cached)."""
        return self.block("topic", "topic"), self.block("topic", "concept"), self.block("concept", "concept")

    def edge_counts(self) -> dict[str, int]:
        """Number of undirected edges per type.

        Returns
        -------
        dict
            ``{"topic-topic": int, "topic-concept": int, "concept-concept": int}``.
        """
        topic_topic, topic_concept, concept_concept = self.walk_blocks
        return {"topic-topic": topic_topic.nnz // 2, "topic-concept": topic_concept.nnz,
                "concept-concept": concept_concept.nnz // 2}

    def components(self) -> tuple[int, np.ndarray]:
        """Connected components of the whole graph (isolated nodes count as components).

        Returns
        -------
        n_components : int
        labels : ndarray of int, shape (n_nodes,)
        """
        return connected_components(self.counts, directed=False)

    def stats(self, top: int = 10) -> dict[str, Any]:
        """A JSON-able summary: sizes, edges per type, degrees, components, top concepts.

        Parameters
        ----------
        top : int, default 10
            How many of the most frequent topics and key concepts to list.

        Returns
        -------
        dict
        """
        degree = np.diff(self.counts.indptr)
        n_components, labels = self.components()
        component_sizes = np.bincount(labels) if self.n_nodes else np.array([0])

        def degree_summary(values: np.ndarray) -> dict[str, float]:
            if not len(values):
                return {"min": 0, "median": 0, "mean": 0, "p99": 0, "max": 0}
            return {"min": int(values.min()), "median": float(np.median(values)),
                    "mean": round(float(values.mean()), 2), "p99": round(float(np.percentile(values, 99)), 2),
                    "max": int(values.max())}

        def most_frequent(offset: int, names: list[str]) -> list[dict[str, Any]]:
            frequency = self.document_frequency[offset:offset + len(names)]
            order = np.lexsort((np.arange(len(names)), -frequency))[:top]
            return [{"name": names[i], "documents": int(frequency[i]), "degree": int(degree[offset + i])}
                    for i in order]

        return {
            "documents": self.n_documents,
            "nodes": {"topics": self.n_topics, "concepts": self.n_concepts},
            "edges": self.edge_counts(),
            "degree": {"topics": degree_summary(degree[:self.n_topics]),
                       "concepts": degree_summary(degree[self.n_topics:])},
            "components": {"count": int(n_components), "largest": int(component_sizes.max()),
                           "isolated_nodes": int(np.count_nonzero(degree == 0))},
            "synonyms_merged": {key: len(value) for key, value in self.synonyms.items()},
            "top_topics": most_frequent(0, self.topic_names),
            "top_concepts": most_frequent(self.n_topics, self.concept_names),
        }

    # -------------------------------------------------------- other modules
    @cached_property
    def name_index(self) -> NameIndex:
        """The inverted index used by :meth:`top_k_documents` (built on first use)."""
        from .retrieval import NameIndex
        return NameIndex(self)

    def top_k_documents(self, names: Iterable[str], k: int = 2) -> list[tuple[str, float]]:
        """The ``k`` documents whose concept sets are most Jaccard-similar to ``names``.

        See :func:`synthllm.graph.retrieval.top_k_documents`.
        """
        from .retrieval import top_k_documents
        return top_k_documents(self, names, k)

    def coverage(self, walks: list[Walk] | WalkArrays) -> dict[str, Any]:
        """How much of the graph the walks used. See :func:`synthllm.graph.coverage.coverage_report`."""
        from .coverage import coverage_report
        return coverage_report(self, walks)

    # --------------------------------------------------------------- storage
    def save(self, folder: str | Path) -> None:
        """Write the graph to ``folder`` as ``graph.npz`` (arrays) and ``graph.json`` (names, settings).

        Parameters
        ----------
        folder : str or Path
            Created if missing; existing graph files are replaced.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / _ARRAYS_FILE,
                 counts_indptr=self.counts.indptr, counts_indices=self.counts.indices,
                 counts_data=self.counts.data,
                 incidence_indptr=self.incidence.indptr, incidence_indices=self.incidence.indices,
                 document_frequency=self.document_frequency)
        meta = {"format_version": FORMAT_VERSION, "epsilon": self.epsilon, "topics": self.topic_names,
                "concepts": self.concept_names, "doc_ids": self.doc_ids, "synonyms": self.synonyms}
        (folder / _META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> ConceptGraph:
        """Read a graph written by :meth:`save`.

        Parameters
        ----------
        folder : str or Path

        Returns
        -------
        ConceptGraph
        """
        folder = Path(folder)
        if not (folder / _META_FILE).is_file() or not (folder / _ARRAYS_FILE).is_file():
            raise FileNotFoundError(f"{folder}: not a graph folder (needs {_META_FILE} and {_ARRAYS_FILE})")
        meta = json.loads((folder / _META_FILE).read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder / _META_FILE}: unsupported format_version {meta.get('format_version')!r}")
        n_nodes = len(meta["topics"]) + len(meta["concepts"])
        with np.load(folder / _ARRAYS_FILE) as arrays:
            counts = sparse.csr_matrix((arrays["counts_data"], arrays["counts_indices"], arrays["counts_indptr"]),
                                       shape=(n_nodes, n_nodes))
            incidence_indices = arrays["incidence_indices"]
            incidence = sparse.csr_matrix((np.ones(len(incidence_indices), dtype=np.int32), incidence_indices,
                                           arrays["incidence_indptr"]), shape=(len(meta["doc_ids"]), n_nodes))
            document_frequency = arrays["document_frequency"]
        return cls(meta["topics"], meta["concepts"], meta["doc_ids"], counts, incidence, document_frequency,
                   epsilon=meta["epsilon"], synonyms=meta["synonyms"])
