"""Building the corpus-wide concept graph from per-document concept records.

A :class:`ConceptGraphBuilder` collects, for each document, the set of nodes
(topics and key concepts, in separate namespaces) that occur in it: a row of
the document × node incidence matrix ``A``. Co-occurrence counts are the
off-diagonal part of ``Aᵀ A``: ``C[u, v]`` is the number of documents holding
both ``u`` and ``v``. Counting enumerates each document's node pairs
(vectorised per document size) once per shard; shard builders combine with :meth:`merge`,
which sums their partial counts, so a build can run as one builder per worker
followed by a reduce.
"""

from __future__ import annotations

import operator
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from ..errors import InputError

from .canonical import canonicalize, canonicalize_many, merge_near_synonyms
from .graph import ConceptGraph

TOPIC, CONCEPT = 0, 1
_DOC_ID_FIELDS = ("doc_id", "document_id", "source_id", "id")
_CONCEPT_FIELDS = ("key_concepts", "concepts", "kcs")


class ConceptRecordError(InputError):
    """A concept record does not have the expected shape; the message says why."""


def topics_from_record(record: Mapping[str, Any]) -> tuple[str, list[tuple[str, list[str]]]]:
    """Read the document id and the (topic, key concepts) list of one concept record.

    Accepted shapes of ``record["topics"]``: a list of objects
    ``{"topic" | "name": str, "key_concepts" | "concepts" | "kcs": [str, ...]}``,
    a list of ``[topic, [concepts...]]`` pairs, or an object
    ``{topic: [concepts...]}``. The document id is the first present field of
    ``doc_id``, ``document_id``, ``source_id``, ``id``.

    Parameters
    ----------
    record : mapping
        One JSON record of the concept-extraction stage.

    Returns
    -------
    tuple of (str, list of (str, list of str))
        The document id and its topics with their key concepts.

    Raises
    ------
    ConceptRecordError
        When the id or the topics are missing or malformed.
    """
    doc_id = next((record[field] for field in _DOC_ID_FIELDS if record.get(field) not in (None, "")), None)
    if doc_id is None:
        raise ConceptRecordError(f"no document id (expected one of {', '.join(_DOC_ID_FIELDS)})")
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        from ..io import json_type

        raise ConceptRecordError(f"document id is {json_type(doc_id)}, not a string or an integer")
    raw_topics = record.get("topics")
    if raw_topics is None:
        raise ConceptRecordError("no 'topics' field")
    items = raw_topics.items() if isinstance(raw_topics, Mapping) else raw_topics
    if not isinstance(items, Iterable) or isinstance(items, str):
        raise ConceptRecordError("'topics' must be a list or an object")
    topics: list[tuple[str, list[str]]] = []
    for item in items:
        if isinstance(item, Mapping):
            topic = item.get("topic", item.get("name"))
            concepts = next((item[field] for field in _CONCEPT_FIELDS if field in item), [])
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            topic, concepts = item
        else:
            raise ConceptRecordError(f"cannot read topic entry {item!r}")
        if not isinstance(topic, str) or not isinstance(concepts, list) \
                or not all(isinstance(concept, str) for concept in concepts):
            raise ConceptRecordError(f"topic entry {item!r} needs a string topic and a list of strings")
        topics.append((topic, concepts))
    return str(doc_id), topics


def concept_record_files(inputs: Iterable[str | Path]) -> list[Path]:
    """The JSONL files named by a list of files and run folders.

    A folder stands for its ``stages/concepts/part-*.jsonl`` shards (or, when it
    has none, for the ``*.jsonl`` files directly inside it); shard rejects
    (``*.rejects.jsonl``) are left out.

    Parameters
    ----------
    inputs : iterable of str or Path
        JSONL files and/or run folders.

    Returns
    -------
    list of Path
        The files in order (each folder's shards sorted by name).
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            # a stage folder also holds each shard's rejects (inputs without concepts): not records
            shards = [path for path in (sorted((item / "stages" / "concepts").glob("part-*.jsonl"))
                                        or sorted(item.glob("*.jsonl")))
                      if not path.name.endswith(".rejects.jsonl")]
            if not shards:
                raise FileNotFoundError(f"{item}: no stages/concepts/part-*.jsonl and no *.jsonl files")
            files.extend(shards)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return files


def read_concept_records(path: str | Path) -> Iterator[tuple[str, list[tuple[str, list[str]]]]]:
    """Iterate over (doc_id, topics) of a concept-record JSONL file.

    Parameters
    ----------
    path : str or Path
        A JSONL file, one concept record per line (blank lines skipped).

    Yields
    ------
    tuple of (str, list of (str, list of str))
        As returned by :func:`topics_from_record`.

    Raises
    ------
    ConceptRecordError
        With ``file:line: reason`` when a line is not a concept record.
    synthllm.io.JsonlError
        With ``file:line: reason`` when a line is not UTF-8, not JSON or not an object.
    """
    from ..io import iter_numbered_jsonl

    for line_number, record in iter_numbered_jsonl(path):
        try:
            yield topics_from_record(record)
        except ConceptRecordError as error:
            raise ConceptRecordError(f"{path}:{line_number}: {error}") from None


class ConceptGraphBuilder:
    """Accumulates documents' concept sets and co-occurrence counts; builds a :class:`ConceptGraph`.

    Node names are canonicalised with :func:`canonicalize` on the way in.
    Topics and key concepts are separate namespaces: a topic and a key concept
    with the same name are two nodes.

    Examples
    --------
    >>> builder = ConceptGraphBuilder()
    >>> builder.add_document("d1", [("Algebra", ["Linear equations", "Slope"])])
    >>> graph = builder.build()
    >>> graph.n_topics, graph.n_concepts
    (1, 2)
    """

    def __init__(self) -> None:
        self._node_ids: tuple[dict[str, int], dict[str, int]] = ({}, {})
        self._node_kind = array("b")
        self._node_name: list[str] = []
        self._doc_ids: list[str] = []
        self._indptr = array("q", [0])
        self._indices = array("i")
        # co-occurrence counts of the first `_counted_docs` documents (local node ids)
        self._counts: sparse.csr_matrix | None = None
        self._counted_docs = 0

    @property
    def n_documents(self) -> int:
        """Number of documents added so far."""
        return len(self._doc_ids)

    @property
    def n_nodes(self) -> int:
        """Number of distinct (kind, canonical name) nodes seen so far."""
        return len(self._node_name)

    def _node(self, kind: int, name: str) -> int:
        ids = self._node_ids[kind]
        node = ids.get(name)
        if node is None:
            node = ids[name] = len(self._node_name)
            self._node_kind.append(kind)
            self._node_name.append(name)
        return node

    def add_document(self, doc_id: str, topics: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Add one document's topics and their key concepts.

        Parameters
        ----------
        doc_id : str
            The document's id (unique over everything merged into one graph).
        topics : sequence of (str, sequence of str)
            Each topic with its key concepts. Names are canonicalised; names that
            canonicalise to an empty string are skipped, repeats count once.
        """
        nodes = set()
        for topic, concepts in topics:
            topic_name = canonicalize(topic)
            if topic_name:
                nodes.add(self._node(TOPIC, topic_name))
            for concept in concepts:
                concept_name = canonicalize(concept)
                if concept_name:
                    nodes.add(self._node(CONCEPT, concept_name))
        self._doc_ids.append(str(doc_id))
        self._indices.extend(sorted(nodes))
        self._indptr.append(len(self._indices))

    def add_records(self, records: Iterable[tuple[str, Sequence[tuple[str, Sequence[str]]]]]) -> None:
        """Add many ``(doc_id, topics)`` pairs (e.g. from :func:`read_concept_records`).

        Parameters
        ----------
        records : iterable of (str, sequence of (str, sequence of str))
            Documents as accepted by :meth:`add_document`.
        """
        for doc_id, topics in records:
            self.add_document(doc_id, topics)

    def add_encoded(self, doc_ids: Sequence[str], topic_names: Sequence[str], concept_names: Sequence[str],
                    topic_indptr: np.ndarray, topic_indices: np.ndarray,
                    concept_indptr: np.ndarray, concept_indices: np.ndarray) -> None:
        """Add many documents given as CSR-encoded topic and key-concept sets (the bulk path).

        Only the vocabularies are canonicalised (once per distinct name), so this
        is the fast way in for shards that a reduce step already encoded.

        Parameters
        ----------
        doc_ids : sequence of str
            One id per document.
        topic_names, concept_names : sequence of str
            Vocabularies that the index arrays point into.
        topic_indptr, topic_indices : ndarray
            CSR structure: document ``i`` holds topics
            ``topic_names[topic_indices[topic_indptr[i]:topic_indptr[i+1]]]``.
        concept_indptr, concept_indices : ndarray
            The same for key concepts.
        """
        if len(topic_indptr) != len(doc_ids) + 1 or len(concept_indptr) != len(doc_ids) + 1:
            raise ValueError("topic_indptr and concept_indptr need len(doc_ids) + 1 entries")
        lookups = [self._vocabulary_ids(TOPIC, topic_names), self._vocabulary_ids(CONCEPT, concept_names)]
        indptr, indices = _encoded_rows(len(doc_ids), self.n_nodes,
                                        (np.asarray(topic_indptr), lookups[TOPIC][np.asarray(topic_indices)]),
                                        (np.asarray(concept_indptr), lookups[CONCEPT][np.asarray(concept_indices)]))
        offset = len(self._indices)
        self._indices.frombytes(indices.view(np.uint8))
        self._indptr.frombytes((indptr[1:] + offset).view(np.uint8))
        self._doc_ids.extend(map(str, doc_ids))

    def _vocabulary_ids(self, kind: int, names: Sequence[str]) -> np.ndarray:
        """Local node ids (int32) of a vocabulary's names (canonicalised; ``-1`` for empty names)."""
        canonical = canonicalize_many(names)
        ids = self._node_ids[kind]
        new_names = [name for name in dict.fromkeys(canonical) if name not in ids]
        if "" in new_names:  # names that canonicalise to nothing are no node
            new_names.remove("")
        ids.update(zip(new_names, range(self.n_nodes, self.n_nodes + len(new_names))))
        self._node_name.extend(new_names)
        self._node_kind.extend([kind] * len(new_names))
        return np.fromiter(map(ids.get, canonical, repeat(-1)), dtype=np.int32, count=len(canonical))

    def incidence(self) -> sparse.csr_matrix:
        """The binary document × node incidence matrix in this builder's local node ids.

        Returns
        -------
        scipy.sparse.csr_matrix of int32, shape (n_documents, n_nodes)
        """
        return sparse.csr_matrix((np.ones(len(self._indices), dtype=np.int32),
                                  np.frombuffer(self._indices, dtype=np.int32),
                                  np.frombuffer(self._indptr, dtype=np.int64)),
                                 shape=(self.n_documents, self.n_nodes))

    def partial_counts(self) -> sparse.csr_matrix:
        """Co-occurrence counts of every document added so far (local node ids).

        Counts are cached: documents added later are counted on the next call
        and added to the cache, so calling this on each shard builder before
        :meth:`merge` moves the counting onto the shard workers.

        Returns
        -------
        scipy.sparse.csr_matrix of int32, shape (n_nodes, n_nodes)
            Symmetric, zero diagonal.
        """
        if self._counted_docs < self.n_documents or self._counts is None:
            pending = _cooccurrence(self.incidence()[self._counted_docs:])
            if self._counts is None:
                self._counts = pending
            else:
                self._counts.resize(pending.shape)
                self._counts = (self._counts + pending).tocsr()
            self._counted_docs = self.n_documents
        self._counts.resize((self.n_nodes, self.n_nodes))
        return self._counts

    def merge(self, other: ConceptGraphBuilder) -> None:
        """Add another builder's documents and counts to this one.

        Parameters
        ----------
        other : ConceptGraphBuilder
            A builder over a disjoint set of documents (e.g. another shard).
            Its partial counts are summed with this builder's when both are
            complete; otherwise the missing ones are counted at build time.
        """
        remap = np.fromiter((self._node(kind, name) for kind, name in zip(other._node_kind, other._node_name)),
                            dtype=np.int64, count=other.n_nodes)
        both_counted = (self._counted_docs == self.n_documents and other._counts is not None
                        and other._counted_docs == other.n_documents)
        offset = len(self._indices)
        other_indices = np.frombuffer(other._indices, dtype=np.int32)
        self._indices.frombytes(remap[other_indices].astype(np.int32).tobytes())
        self._indptr.frombytes((np.frombuffer(other._indptr, dtype=np.int64)[1:] + offset).tobytes())
        self._doc_ids.extend(other._doc_ids)
        if both_counted:
            other_counts = other._counts.tocoo()
            moved = sparse.csr_matrix((other_counts.data, (remap[other_counts.row], remap[other_counts.col])),
                                      shape=(self.n_nodes, self.n_nodes))
            own = self._counts if self._counts is not None else sparse.csr_matrix(moved.shape, dtype=np.int32)
            own.resize(moved.shape)
            self._counts = (own + moved).tocsr()
            self._counted_docs = self.n_documents

    def build(self, epsilon: float = 1e-6, synonym_threshold: float | None = None,
              embed: Callable[[list[str]], np.ndarray] | None = None) -> ConceptGraph:
        """Build the graph: nodes in canonical order, counts, weights, incidence.

        Nodes are ordered topics first, then key concepts, each by name;
        documents by id. So the graph does not depend on the order in which
        documents or shards were added.

        Parameters
        ----------
        epsilon : float, default 1e-6
            The ε of the edge weight ``log(count + ε)``.
        synonym_threshold : float, optional
            When set, names of the same namespace whose embedding cosine
            similarity is at least this are merged (see
            :func:`merge_near_synonyms`); the map is kept in ``graph.synonyms``.
        embed : callable, optional
            Embedding function for the synonym merge (default: packaged MiniLM).

        Returns
        -------
        ConceptGraph

        Raises
        ------
        ValueError
            When a document id occurs twice.
        """
        identity_order = all(map(operator.lt, self._doc_ids, self._doc_ids[1:]))
        if identity_order:  # strictly increasing (e.g. one sorted shard): in order and without repeats
            doc_order = np.arange(len(self._doc_ids))
            sorted_ids = self._doc_ids
        else:
            doc_ids = np.array(self._doc_ids, dtype=object)
            doc_order = np.argsort(doc_ids.astype(str), kind="stable")
            sorted_ids = doc_ids[doc_order]
            duplicated = np.nonzero(sorted_ids[1:] == sorted_ids[:-1])[0]
            if len(duplicated):
                raise ValueError(f"document id {sorted_ids[duplicated[0]]!r} was added more than once")
            sorted_ids = sorted_ids.tolist()
        node_kind = np.frombuffer(self._node_kind, dtype=np.int8)
        names = self._node_name
        synonyms: dict[str, dict[str, str]] = {"topics": {}, "concepts": {}}
        local_target = np.arange(self.n_nodes)
        if synonym_threshold is not None:
            frequency = np.asarray(self.incidence().sum(axis=0)).ravel()
            for kind, key in ((TOPIC, "topics"), (CONCEPT, "concepts")):
                members = np.nonzero(node_kind == kind)[0]
                merged = merge_near_synonyms([names[i] for i in members], synonym_threshold,
                                             frequencies=frequency[members], embed=embed)
                synonyms[key] = merged
                for variant, representative in merged.items():
                    local_target[self._node_ids[kind][variant]] = self._node_ids[kind][representative]
        if identity_order:  # the builder's own arrays, as they are
            indptr, indices = np.frombuffer(self._indptr, dtype=np.int64), np.frombuffer(self._indices, dtype=np.int32)
        else:
            moved = self.incidence()[doc_order]
            indptr, indices = moved.indptr, moved.indices
        seen = np.zeros(self.n_nodes, dtype=bool)
        seen[indices] = True
        present = np.zeros(self.n_nodes, dtype=bool)
        present[local_target[seen]] = True
        # final order: topics by name, then key concepts by name
        kept = np.flatnonzero(present)
        kept = np.concatenate([np.array(sorted(kept[node_kind[kept] == kind].tolist(), key=names.__getitem__),
                                        dtype=np.int64) for kind in (TOPIC, CONCEPT)])
        final_of_local = np.full(self.n_nodes, -1, dtype=np.int32)
        final_of_local[kept] = np.arange(len(kept), dtype=np.int32)
        final_of_local = final_of_local[local_target]
        n_nodes = len(kept)
        final_incidence = sparse.csr_matrix((np.ones(len(indices), dtype=np.int32), final_of_local[indices], indptr),
                                            shape=(len(doc_order), n_nodes))
        final_incidence.sum_duplicates()  # sorts each row; merges synonyms that met in one document
        final_incidence.data[:] = 1
        merged_any = any(synonyms.values())
        if merged_any or self._counted_docs == 0:
            # nothing counted yet, or merged nodes (whose counts are not additive): count now
            counts = _cooccurrence(final_incidence)
        else:
            local_counts = self.partial_counts().tocoo()
            counts = sparse.csr_matrix((local_counts.data, (final_of_local[local_counts.row],
                                                            final_of_local[local_counts.col])),
                                       shape=(n_nodes, n_nodes))
        counts.sort_indices()
        document_frequency = np.bincount(final_incidence.indices, minlength=n_nodes).astype(np.int64)
        n_topics = int(np.count_nonzero(node_kind[kept] == TOPIC))
        return ConceptGraph(
            topic_names=[names[i] for i in kept[:n_topics]],
            concept_names=[names[i] for i in kept[n_topics:]],
            doc_ids=list(sorted_ids),
            counts=counts,
            incidence=final_incidence,
            document_frequency=document_frequency,
            epsilon=epsilon,
            synonyms=synonyms,
        )


def _cooccurrence(incidence: sparse.csr_matrix) -> sparse.csr_matrix:
    """Symmetric pair counts (zero diagonal, sorted indices) of a binary incidence matrix.

    Equal to ``Aᵀ A`` without its diagonal, computed by enumerating each
    document's node pairs (grouped by document size, so it is vectorised),
    sorting the pair keys and counting runs: faster than the sparse product
    when documents hold few nodes. Every array is written once into its final
    size and type (int32 wherever the values fit): on the 1M-document benchmark
    the earlier build spent about 1.0 s computing and 0.1-1.3 s (from run to
    run) in the kernel, faulting in pages of fresh temporaries, so fewer and
    smaller temporaries are what made it faster (bench/results/graph.md).
    """
    if not incidence.has_sorted_indices:
        incidence = incidence.copy()
        incidence.sort_indices()
    n_nodes = incidence.shape[1]
    indptr, indices = incidence.indptr, incidence.indices
    sizes = np.diff(indptr)
    pair_sizes = np.unique(sizes[sizes >= 2])
    group_documents = [np.flatnonzero(sizes == size) for size in pair_sizes]
    n_pairs = sum(len(documents) * (int(size) * (int(size) - 1) // 2)
                  for size, documents in zip(pair_sizes, group_documents))
    if n_pairs == 0:  # no document holds two nodes (or no documents): no edges
        return sparse.csr_matrix((n_nodes, n_nodes), dtype=np.int32)
    pair_keys = np.empty(n_pairs, dtype=np.int64)  # first * n_nodes + second, first < second
    start = 0
    for size, documents in zip(pair_sizes.tolist(), group_documents):
        nodes = indices[indptr[documents][:, None] + np.arange(size)]
        first, second = np.triu_indices(size, 1)  # rows are sorted, so first < second
        block = pair_keys[start:start + len(documents) * len(first)].reshape(len(documents), len(first))
        np.multiply(nodes[:, first], n_nodes, out=block, dtype=np.int64)
        block += nodes[:, second]
        start += block.size
    del group_documents, nodes
    pair_keys.sort()
    new_run = np.empty(n_pairs, dtype=bool)
    new_run[0] = True
    np.not_equal(pair_keys[1:], pair_keys[:-1], out=new_run[1:])
    run_starts = np.flatnonzero(new_run)
    del new_run
    counts = np.empty(len(run_starts), dtype=np.int32)
    np.subtract(run_starts[1:], run_starts[:-1], out=counts[:-1], casting="unsafe")
    counts[-1] = n_pairs - run_starts[-1]
    # into run_starts' own memory (mode "clip" does not buffer; entry k is read before it is overwritten)
    unique_keys = np.take(pair_keys, run_starts, out=run_starts, mode="clip")
    del pair_keys
    upper_indptr = np.searchsorted(unique_keys, np.arange(n_nodes + 1, dtype=np.int64) * n_nodes)
    columns = np.remainder(unique_keys, n_nodes, out=unique_keys).astype(np.int32)
    del unique_keys, run_starts
    upper = sparse.csr_matrix((counts, columns, upper_indptr), shape=(n_nodes, n_nodes))
    # row i: the transpose's entries (columns < i) then the upper ones (> i); csr_plus_csr merges sorted rows
    return upper + upper.T.tocsr()


def _encoded_rows(n_docs: int, n_nodes: int,
                  *parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Merge CSR parts (indptr, node ids; ``-1`` for no node) row by row: sorted ids without repeats.

    Returns
    -------
    indptr : ndarray of int64, shape (n_docs + 1,)
    indices : ndarray of int32
    """
    cleaned = []
    for indptr, node_ids in parts:
        indptr = np.asarray(indptr, dtype=np.int64)
        node_ids = np.asarray(node_ids, dtype=np.int32)
        keep = node_ids >= 0
        if not keep.all():  # names that canonicalised to nothing: drop them and fix the row pointers
            rows = np.repeat(np.arange(n_docs), np.diff(indptr))[keep]
            indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=n_docs))))
            node_ids = node_ids[keep]
        cleaned.append((indptr, node_ids))
    indptr = sum(part_indptr for part_indptr, _ in cleaned)
    index_type = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    before = np.zeros(n_docs, dtype=np.int64)  # entries of the row's earlier parts
    for part_indptr, node_ids in cleaned:
        row_sizes = np.diff(part_indptr)
        # entry k of row d goes to indptr[d] + before[d] + (k - part_indptr[d])
        position = np.repeat((indptr[:-1] + before - part_indptr[:-1]).astype(index_type), row_sizes)
        position += np.arange(len(node_ids), dtype=index_type)
        indices[position] = node_ids
        before += row_sizes
    del position
    matrix = sparse.csr_matrix((np.ones(len(indices), dtype=np.int8), indices, indptr), shape=(n_docs, n_nodes))
    matrix.sum_duplicates()  # sorts each row, then drops repeats in place
    return matrix.indptr.astype(np.int64), matrix.indices
