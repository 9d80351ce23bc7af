"""Top-k Jaccard retrieval of reference documents through an inverted index.

A document's concept set is the set of canonical names of its topics and key
concepts (as strings: a topic and a key concept with the same name count
once). For a query set ``Q`` the score of document ``D`` is
``|Q ∩ D| / |Q ∪ D|``. Only documents sharing at least one name with the query
can score above zero; they are found through the name → documents posting
lists (the columns of a CSC name-incidence matrix) and their intersections are
counted with one ``bincount``. Ties are broken by document id (ascending), so
results are deterministic and equal to a brute-force scan.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import sparse

from .canonical import canonicalize
from .graph import ConceptGraph


class NameIndex:
    """The document × name incidence of a graph, with posting lists and set sizes.

    Parameters
    ----------
    graph : ConceptGraph
    """

    def __init__(self, graph: ConceptGraph) -> None:
        names = graph.node_names
        self.name_ids: dict[str, int] = {}
        node_to_name = np.fromiter((self.name_ids.setdefault(name, len(self.name_ids)) for name in names),
                                   dtype=np.int64, count=len(names))
        incidence = graph.incidence
        by_name = sparse.csr_matrix((np.ones(incidence.nnz, dtype=np.int32), node_to_name[incidence.indices],
                                     incidence.indptr), shape=(incidence.shape[0], len(self.name_ids)))
        by_name.sum_duplicates()
        by_name.data[:] = 1
        self.document_size = np.diff(by_name.indptr)
        self.postings = by_name.tocsc()
        self.synonyms = graph.synonyms
        self.doc_ids = graph.doc_ids

    def resolve(self, name: str) -> str:
        """Canonical form of a query name, mapped through the graph's synonym merge."""
        canonical = canonicalize(name)
        canonical = self.synonyms.get("concepts", {}).get(canonical, canonical)
        return self.synonyms.get("topics", {}).get(canonical, canonical)

    def top_k(self, names: Iterable[str], k: int = 2) -> list[tuple[str, float]]:
        """See :func:`top_k_documents`."""
        query = {resolved for resolved in map(self.resolve, names) if resolved}
        known = np.array(sorted(self.name_ids[name] for name in query if name in self.name_ids), dtype=np.int64)
        if k <= 0 or not len(known):
            return []
        starts, ends = self.postings.indptr[known], self.postings.indptr[known + 1]
        hits = np.concatenate([self.postings.indices[a:b] for a, b in zip(starts, ends)])
        candidates, intersection = np.unique(hits, return_counts=True)
        score = intersection / (len(query) + self.document_size[candidates] - intersection)
        # documents are stored in id order, so the row number breaks ties by id
        order = np.lexsort((candidates, -score))[:k]
        return [(self.doc_ids[candidates[i]], float(score[i])) for i in order]


def top_k_documents(graph: ConceptGraph, names: Iterable[str], k: int = 2) -> list[tuple[str, float]]:
    """The ``k`` documents with the highest Jaccard similarity to a set of concept names.

    Parameters
    ----------
    graph : ConceptGraph
    names : iterable of str
        Topic and/or key-concept names (canonicalised and mapped through the
        graph's synonym merge here; repeats count once).
    k : int, default 2
        How many documents (the paper grounds each walk in the top 2).

    Returns
    -------
    list of (str, float)
        ``(doc_id, jaccard)`` by score descending, then doc id ascending; only
        documents with a positive score, so possibly fewer than ``k``.
    """
    return graph.name_index.top_k(names, k)
