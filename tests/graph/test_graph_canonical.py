"""Canonicalisation of concept names and near-synonym merging."""

from __future__ import annotations

import pytest

import random

from synthllm.graph import ConceptGraphBuilder, canonicalize, canonicalize_many, merge_near_synonyms


@pytest.mark.parametrize(("raw", "expected"), [
    ("  Prime   Numbers ", "prime number"),
    ("Prime-numbers", "prime number"),
    ("prime_number", "prime number"),
    ("Pythagoras's theorem", "pythagoras theorem"),
    ("(Binomial) Theorem!", "binomial theorem"),
    ("Probabilities", "probability"),
    ("Matrices", "matrix"),
    ("Boxes", "box"),
    ("Classes of functions", "class of functions"),
    ("Systems of equations", "system of equations"),
    ("Law of sines", "law of sines"),
    ("Taylor Series.", "taylor series"),
    ("Mathematics", "mathematics"),
    ("Analysis", "analysis"),
    ("3.5 percent", "3.5 percent"),
    ("Roots of $x ^ 2 \\, + 1$", "root of $x^2+1$"),
    ("$\\sin x$ identity", "$\\sin x$ identity"),
    ("$\\Gamma$ function", "$\\Gamma$ function"),
    ("$a\\quad b$", "$ab$"),
    ("!!!", ""),
])
def test_canonicalize_cases(raw, expected):
    assert canonicalize(raw) == expected


def test_canonicalize_is_idempotent():
    for raw in ["Prime-Numbers", "Roots of $x ^ 2$", "Classes of functions", "Series"]:
        once = canonicalize(raw)
        assert canonicalize(once) == once


def test_canonicalize_many_equals_canonicalize_name_by_name():
    # the bulk scan decides which names skip canonicalize: every way a plain-looking name can still
    # need folding (plural head, irregular plural, "of", spacing, empty), next to names that need none
    tricky = ["concept 1", "women", "xmen", "radii", "data", "prime numbers", "system of equation", "of",
              " a", "a ", "a  b", "", "topic 10", "s", "Algebra", "a\nb", "law of sines", "men", "x media"]
    rng = random.Random(0)
    pieces = ["matrices", "radii", "data", "of", "men", "topics", "s", "x", "prime", "", " ", "women", "a1"]
    drawn = [" ".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))) for _ in range(3000)]
    for names in (tricky, [name for name in tricky if "\n" not in name], drawn, [], [""], ["men", ""]):
        assert canonicalize_many(names) == [canonicalize(name) for name in names]


def test_builder_canonicalises_and_keeps_namespaces_apart():
    builder = ConceptGraphBuilder()
    builder.add_document("a", [("Algebra", ["algebra", "Polynomials"])])
    builder.add_document("b", [("algebra", ["polynomial", "ALGEBRA"])])
    graph = builder.build()
    assert graph.topic_names == ["algebra"]
    assert graph.concept_names == ["algebra", "polynomial"]
    # topic "algebra" and key concept "algebra" are two nodes linked by an edge in both documents
    assert graph.counts[graph.topic_index["algebra"], graph.concept_index["algebra"]] == 2


def test_merge_near_synonyms_with_minilm():
    names = ["pythagorean theorem", "pythagoras theorem", "integral", "integration", "prime number"]
    merged = merge_near_synonyms(names, threshold=0.93, frequencies=[1, 5, 1, 1, 1])
    # the more frequent spelling represents the group; integral/integration (cosine ~0.91) stay apart
    assert merged == {"pythagorean theorem": "pythagoras theorem"}


def test_build_with_synonym_threshold_keeps_the_map_and_recounts():
    builder = ConceptGraphBuilder()
    builder.add_document("a", [("Geometry", ["Pythagorean theorem", "Pythagoras theorem", "triangle"])])
    builder.add_document("b", [("Geometry", ["Pythagoras theorem", "triangle"])])
    graph = builder.build(synonym_threshold=0.93)
    assert graph.synonyms["concepts"] == {"pythagorean theorem": "pythagoras theorem"}
    assert graph.concept_names == ["pythagoras theorem", "triangle"]
    # document "a" holds both spellings but counts once
    assert graph.counts[graph.concept_index["pythagoras theorem"], graph.concept_index["triangle"]] == 2
    assert graph.top_k_documents(["Pythagorean theorem", "triangle"], k=1)[0][1] == pytest.approx(2 / 3)
