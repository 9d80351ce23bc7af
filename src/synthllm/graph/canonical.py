"""Concept-name canonicalisation and near-synonym merging.

The paper matches concept strings exactly, so "Prime numbers", "prime number"
and "prime-number" would be three nodes. :func:`canonicalize` folds the
spelling variants that carry no meaning (ours, see docs/graph.md):

- Unicode NFKC, prose lower-cased (math keeps its case), whitespace collapsed;
- punctuation outside math: hyphens, underscores and slashes become spaces,
  possessive ``'s`` and other punctuation are dropped;
- LaTeX spacing: inside ``$...$``, ``\\(...\\)`` and ``\\[...\\]`` the spacing
  commands (``\\,`` ``\\;`` ``\\!`` ``\\quad`` ``~``) are removed, and so is
  whitespace except between a command name and a following letter
  (``\\sin x`` keeps its space, ``x ^ 2`` becomes ``x^2``);
- simple plurals: the head noun (the word before the first "of", otherwise the
  last word) is put in the singular by suffix rules (``-ies``, ``-ches``, ``-s``...) with a list of
  irregular forms and of words that only look plural ("series", "physics").

:func:`merge_near_synonyms` goes further with sentence embeddings: names whose
cosine similarity is above a threshold are grouped and mapped to one
representative; the map is returned so it can be inspected.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

_MATH_SEGMENT = re.compile(r"(\$\$.*?\$\$|\$.*?\$|\\\(.*?\\\)|\\\[.*?\\\])", re.DOTALL)
_LATEX_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b|~")
_COMMAND_THEN_LETTER = re.compile(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])")
_ANY_SPACE = re.compile(r"\s+")
_SEPARATORS = re.compile(r"[-‐‑‒–—_/]+")
_POSSESSIVE = re.compile(r"(?<=\w)['’]s\b")
_PUNCTUATION = re.compile(r"[^\w\s$\\^+*=<>|.]|(?<!\d)\.|\.(?!\d)")
_WHITESPACE = re.compile(r"\s+")
_PLAIN = re.compile(r"[a-z0-9]+(?: [a-z0-9]+)*")

_IRREGULAR_SINGULARS = {
    "matrices": "matrix", "vertices": "vertex", "indices": "index", "appendices": "appendix",
    "radii": "radius", "foci": "focus", "loci": "locus", "nuclei": "nucleus", "stimuli": "stimulus",
    "criteria": "criterion", "phenomena": "phenomenon", "polyhedra": "polyhedron",
    "axes": "axis", "bases": "basis", "analyses": "analysis", "hypotheses": "hypothesis",
    "theses": "thesis", "parentheses": "parenthesis", "ellipses": "ellipse", "asymptotes": "asymptote",
    "formulae": "formula", "formulas": "formula", "lemmata": "lemma", "children": "child",
    "men": "man", "women": "woman", "people": "person", "data": "data", "media": "media",
}
# words that end in "s" but are singular (or have no singular)
_NOT_PLURAL = {
    "series", "species", "means", "news", "analysis", "basis", "axis", "thesis", "hypothesis",
    "parenthesis", "synthesis", "diagnosis", "emphasis", "genesis", "calculus", "radius", "locus",
    "focus", "nucleus", "modulus", "torus", "rhombus", "annulus", "stimulus", "status", "corpus",
    "lens", "bias", "gas", "atlas", "chaos", "cosmos", "ethos", "pathos", "logos", "always",
    "mathematics", "physics", "statistics", "economics", "dynamics", "mechanics", "kinematics",
    "thermodynamics", "electronics", "optics", "genetics", "linguistics", "ethics", "politics",
    "logistics", "acoustics", "combinatorics", "topics", "whereas", "thus", "plus", "minus",
    "versus", "less", "cos", "sinus", "gauss", "stokes", "maxwells", "bayes", "jones", "lagranges",
}


def _singular(word: str) -> str:
    """The singular of one lower-case word by suffix rules (words of 3 letters or less kept)."""
    if word in _IRREGULAR_SINGULARS:
        return _IRREGULAR_SINGULARS[word]
    if len(word) <= 3 or not word.isalpha() or word in _NOT_PLURAL or word.endswith("ics"):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zzes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _canonical_math(segment: str) -> str:
    segment = _LATEX_SPACING.sub(" ", segment)
    # protect the space that ends a command name before a letter ("\\sin x"), drop the others
    segment = _COMMAND_THEN_LETTER.sub("\\1\x00", segment)
    return _ANY_SPACE.sub("", segment).replace("\x00", " ")


def _canonical_text(text: str) -> str:
    text = _POSSESSIVE.sub("", text)
    text = _SEPARATORS.sub(" ", text)
    text = _PUNCTUATION.sub("", text)
    return _singular_heads(text.split())


def _singular_heads(words: list[str]) -> str:
    """Join words with the head noun put in the singular.

    The head is the word before the first "of" ("systems of equations" →
    "system of equations"), otherwise the last word ("prime numbers").
    """
    if not words:
        return ""
    head = words.index("of", 1) - 1 if "of" in words[1:] else len(words) - 1
    words[head] = _singular(words[head])
    return " ".join(words)


@lru_cache(maxsize=1 << 20)
def canonicalize(name: str) -> str:
    """The canonical form of a concept or topic name.

    Parameters
    ----------
    name : str
        A concept string as a model wrote it.

    Returns
    -------
    str
        Lower-case, whitespace-collapsed name with punctuation, LaTeX spacing and
        simple plurals folded (see the module docstring). An empty string means
        the name held nothing but punctuation.

    Examples
    --------
    >>> canonicalize("  Prime-Numbers ")
    'prime number'
    >>> canonicalize("Pythagoras's theorem")
    'pythagoras theorem'
    >>> canonicalize("Roots of $x ^ 2 \\\\, + 1$")
    'root of $x^2+1$'
    """
    if _PLAIN.fullmatch(name):  # the common case: nothing to fold but plurals
        last_word = name[name.rfind(" ") + 1:]
        if " of " not in name and last_word[-1] != "s" and last_word not in _IRREGULAR_SINGULARS:
            return name  # already canonical: no head noun that could be plural
        return _singular_heads(name.split(" "))
    text = unicodedata.normalize("NFKC", name)
    pieces = []
    for index, piece in enumerate(_MATH_SEGMENT.split(text)):
        # odd pieces are the math segments captured by the split pattern; case matters in
        # math ($\Gamma$ is not $\gamma$), so only the prose is lower-cased
        pieces.append(_canonical_math(piece) if index % 2 else f" {_canonical_text(piece.lower())} ")
    return _WHITESPACE.sub(" ", "".join(pieces)).strip()


# where a name in "\n"-framed, "\n"-joined names is not already canonical (canonicalize's fast path fails):
# a character outside [a-z0-9 ], an empty name, a leading, trailing or doubled space, an "of" (the head noun
# is not the last word), a last word ending in "s" or one of the irregular plurals that do not. Literal
# alternatives, not ^/$ anchors (Python's re scans those 5x faster); no match takes a newline that
# another name's match could start on.
_NOT_PLAIN_CHARACTERS = re.compile(r"[^a-z0-9 \n]")
_NOT_PLAIN_LAYOUT = re.compile(r"\n(?=[\n ])| (?=[\n ])| of(?= )|s(?=\n)")
_IRREGULAR_LAST_WORD = re.compile(
    r"[ \n](?:" + "|".join(sorted(word for word in _IRREGULAR_SINGULARS if not word.endswith("s"))) + r")(?=\n)")


def canonicalize_many(names: Sequence[str]) -> list[str]:
    """:func:`canonicalize` of each name, with the already-canonical ones found in bulk.

    A vocabulary is mostly plain lower-case names without a plural head (and
    entirely so when a reduce step canonicalised it already); those are found by
    a few regular-expression scans over the joined names instead of one Python
    call each (200K such names: 0.055 s instead of 0.22 s). The others go
    through :func:`canonicalize`, so the result is the same name for name.

    Parameters
    ----------
    names : sequence of str

    Returns
    -------
    list of str
        ``[canonicalize(name) for name in names]``.
    """
    names = list(names)
    if not names:
        return []
    framed = "\n" + "\n".join(names) + "\n"
    if framed.count("\n") != len(names) + 1:  # a name holds a newline: no line per name
        return [canonicalize(name) for name in names]
    # name i ends at framed[line_ends[i]] (its "\n"); a match starting on a "\n" flags the name after it
    line_ends = np.cumsum(np.fromiter(map(len, names), dtype=np.int64, count=len(names)) + 1)
    flagged = [match.start() + (framed[match.start()] == "\n")
               for pattern in (_NOT_PLAIN_CHARACTERS, _NOT_PLAIN_LAYOUT, _IRREGULAR_LAST_WORD)
               for match in pattern.finditer(framed)]
    result = names
    for index in np.unique(np.searchsorted(line_ends, np.asarray(flagged, dtype=np.int64))).tolist():
        result[index] = canonicalize(names[index])
    return result


def merge_near_synonyms(
    names: Sequence[str],
    threshold: float = 0.9,
    frequencies: Sequence[float] | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    block_size: int = 4096,
) -> dict[str, str]:
    """Group names whose embeddings are closer than a cosine threshold.

    Pairs with cosine similarity ``>= threshold`` are linked and the connected
    components of that similarity graph become synonym groups (single-link:
    a chain of close pairs joins its ends). Each group is represented by its
    most frequent member (ties: the shorter, then the alphabetically first).

    Parameters
    ----------
    names : sequence of str
        Distinct canonical names of one namespace (topics or key concepts).
    threshold : float, default 0.9
        Cosine similarity at or above which two names are merged.
    frequencies : sequence of float, optional
        Weight of each name (e.g. document frequency) used to pick the
        representative; all equal if omitted.
    embed : callable, optional
        ``embed(list_of_texts) -> (n, d)`` L2-normalised float array; defaults
        to :func:`synthllm.embeddings.embed_texts` (packaged all-MiniLM-L6-v2).
    block_size : int, default 4096
        Rows per block of the similarity product (bounds memory to
        ``block_size * len(names)`` floats).

    Returns
    -------
    dict of str to str
        ``{variant: representative}`` for every name that is merged into
        another; names that stay themselves are absent.
    """
    if len(names) < 2:
        return {}
    if embed is None:
        from ..embeddings import embed_texts as embed
    vectors = np.asarray(embed(list(names)), dtype=np.float32)
    rows, cols = [], []
    for start in range(0, len(names), block_size):
        similarity = vectors[start:start + block_size] @ vectors.T
        block_rows, block_cols = np.nonzero(similarity >= threshold)
        keep = block_cols > block_rows + start  # each unordered pair once, no self pairs
        rows.append(block_rows[keep] + start)
        cols.append(block_cols[keep])
    row_array, col_array = np.concatenate(rows), np.concatenate(cols)
    pairs = coo_matrix((np.ones(len(row_array), dtype=np.int8), (row_array, col_array)),
                       shape=(len(names), len(names)))
    _, labels = connected_components(pairs, directed=False)
    weights = np.ones(len(names)) if frequencies is None else np.asarray(frequencies, dtype=float)
    # representative: highest weight, then shortest, then alphabetically first
    order = sorted(range(len(names)), key=lambda i: (-weights[i], len(names[i]), names[i]))
    representative: dict[int, str] = {}
    for index in order:
        representative.setdefault(int(labels[index]), names[index])
    return {name: representative[int(label)] for name, label in zip(names, labels)
            if representative[int(label)] != name}
