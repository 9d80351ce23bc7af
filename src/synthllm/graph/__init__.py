"""The corpus-wide concept graph of SynthLLM Level-3.

Build it from concept records (:class:`ConceptGraphBuilder`), sample seeded
random walks over it (:func:`sample_walks`), ground each walk in reference
documents (:meth:`ConceptGraph.top_k_documents`) and measure how much of the
graph the walks used (:meth:`ConceptGraph.coverage`). See docs/graph.md.
"""

from .builder import (
    ConceptGraphBuilder,
    ConceptRecordError,
    concept_record_files,
    read_concept_records,
    topics_from_record,
)
from .canonical import canonicalize, canonicalize_many, merge_near_synonyms
from .coverage import coverage_report, gini, usage
from .graph import ConceptGraph
from .retrieval import top_k_documents
from .walks import Walk, WalkArrays, sample_walk_arrays, sample_walks

__all__ = [
    "ConceptGraph",
    "ConceptGraphBuilder",
    "ConceptRecordError",
    "Walk",
    "WalkArrays",
    "canonicalize",
    "canonicalize_many",
    "concept_record_files",
    "coverage_report",
    "gini",
    "merge_near_synonyms",
    "read_concept_records",
    "sample_walk_arrays",
    "sample_walks",
    "top_k_documents",
    "topics_from_record",
    "usage",
]
