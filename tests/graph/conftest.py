"""Shared fixtures of the concept-graph tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from synthllm.graph import ConceptGraph, ConceptGraphBuilder  # noqa: E402

DOCUMENTS = [
    ("d1", [("Algebra", ["Linear equations", "Slope", "Intercept"]), ("Geometry", ["Slope", "Lines", "angles"])]),
    ("d2", [("Algebra", ["Quadratic equations", "roots", "Slope", "vertex"]),
            ("Calculus", ["Derivatives", "Slopes", "Tangent lines", "limits"])]),
    ("d0", [("Geometry", ["Angles", "triangles", "Vertices", "area"]),
            ("Calculus", ["integrals", "area", "limit", "Riemann sums"])]),
    ("d3", [("Algebra", ["algebra", "polynomials", "roots"])]),
]


@pytest.fixture
def documents() -> list:
    """The (doc_id, topics) records behind ``small_graph``."""
    return DOCUMENTS


@pytest.fixture
def small_graph() -> ConceptGraph:
    """A four-document graph with canonicalisation at work (plurals, case)."""
    builder = ConceptGraphBuilder()
    builder.add_records(DOCUMENTS)
    return builder.build()
