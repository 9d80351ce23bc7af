"""Exact, near-duplicate and (optionally) semantic duplicate removal over one text field.

One pass in record order, so that the **first occurrence is kept**; each
record is checked against the records kept before it, and the first rule
that fires removes it:

1. *Exact*: its normalised text (:func:`normalise_text`: Unicode NFKC, lower
   case, punctuation dropped, whitespace collapsed) equals an earlier one's.
2. *Near*: the **exact** Jaccard similarity of the two texts' shingle sets is
   **at or above** ``threshold`` (``>=``; default 0.7). Shingles are the
   *character* n-grams (default 5) of the normalised text with every number
   masked (each digit run becomes ``0``), hashed to 64 bits
   (:func:`char_shingles`). MinHash signatures (``rensa``'s R-MinHash) and LSH
   banding only *propose* candidates; the decision is the exact Jaccard, never
   MinHash's estimate. The bands and rows are chosen per threshold
   (:func:`lsh_params`, datasketch's ``_optimal_param`` criterion), so a pair
   just at the threshold is a candidate with probability >= 0.9 (0.92 at 0.7).
3. *Semantic* (off by default): cosine similarity of sentence embeddings at or
   above ``semantic_threshold``. Candidates come from random-hyperplane
   (SimHash) LSH banding of the embeddings; only candidates get the exact
   cosine, so memory and time stay linear in the records (no n×n matrix).

Why characters and masked numbers: with word 5-grams one replaced word or
number breaks five of a question's ~40 shingles. On 600 GSM8K-train
questions with one edited copy each (``bench/bench_quality_recall.py``), the
word 5-gram rule at 0.8 caught 37.5 % of copies with one number changed,
44.5 % with one word replaced, 6.5 % with two words swapped and 69.5 %
lower-cased without punctuation; character 5-grams on number-masked text at
0.7 catch 96.2 % of copies with a sentence appended and 99.7-100 % of every
other edit kind, at precision 0.997: 2 pairs of *distinct* questions among
3,000 are flagged, GSM8K's own twins (same story, other numbers).

Every removed record is reported with the id of the kept record it
duplicates and the similarity, so nothing disappears silently.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

Record = dict[str, Any]

#: seed of the MinHash permutations; fixed so that runs are reproducible
MINHASH_SEED = 1234
#: seed of the random hyperplanes of the semantic pass
SIMHASH_SEED = 4321

_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"\d+")
#: odd 64-bit multipliers of the polynomial hashes (shingles, band keys)
_SHINGLE_BASE = np.uint64(0x100000001B3)
_BAND_BASE = np.uint64(0x9E3779B97F4A7C15)


def normalise_text(text: str) -> str:
    """Canonical form used for exact matching.

    Parameters
    ----------
    text : str
        Raw text.

    Returns
    -------
    str
        NFKC-normalised, lower-cased words joined by single spaces
        (punctuation and LaTeX delimiters dropped).
    """
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def mask_numbers(normalised: str) -> str:
    """Replace every digit run of a normalised text by ``0`` (``"12 cows"`` -> ``"0 cows"``).

    Parameters
    ----------
    normalised : str
        Output of :func:`normalise_text`.

    Returns
    -------
    str
        The text with numbers masked.
    """
    return _NUMBER.sub("0", normalised)


def word_shingles(normalised: str, ngram: int) -> set[str]:
    """Word n-grams of a normalised text (kept for callers; dedup uses :func:`char_shingles`).

    Parameters
    ----------
    normalised : str
        Output of :func:`normalise_text`.
    ngram : int
        Words per shingle. A text shorter than ``ngram`` words yields one
        shingle holding all its words.

    Returns
    -------
    set of str
        The shingles; empty for an empty text.
    """
    words = normalised.split()
    if not words:
        return set()
    if len(words) <= ngram:
        return {" ".join(words)}
    return {" ".join(words[i:i + ngram]) for i in range(len(words) - ngram + 1)}


def char_shingles(texts: list[str], ngram: int = 5) -> list[np.ndarray]:
    """Hashed character n-grams of each text's number-masked normal form (vectorised).

    Parameters
    ----------
    texts : list of str
        Raw texts.
    ngram : int, default=5
        Characters (UTF-8 bytes) per shingle. A text shorter than ``ngram``
        bytes yields one shingle of all of it.

    Returns
    -------
    list of ndarray
        Per text, the sorted distinct uint64 shingle hashes (empty for a text
        without words). Deterministic across processes (no Python ``hash``).
    """
    encoded = [mask_numbers(normalise_text(text)).encode("utf-8") for text in texts]
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    chars = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.uint64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    # windows of each text: its ngram-grams, or one window of the whole text when shorter
    width = np.minimum(lengths, ngram)
    counts = np.where(lengths > 0, np.maximum(lengths - ngram + 1, 1), 0)
    owner = np.repeat(np.arange(len(texts)), counts)
    first = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    sizes = width[owner]
    hashes = np.zeros(len(first), dtype=np.uint64)
    for offset in range(ngram):  # uint64 arithmetic wraps: a hash modulo 2**64
        inside = offset < sizes
        hashes[inside] = hashes[inside] * _SHINGLE_BASE + chars[first[inside] + offset] + np.uint64(1)
    bounds = np.concatenate(([0], np.cumsum(counts)))
    return [np.unique(hashes[bounds[i]:bounds[i + 1]]) for i in range(len(texts))]


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int, false_negative_weight: float = 0.9) -> tuple[int, int]:
    """LSH bands and rows per band for a similarity threshold.

    Chooses ``b`` bands of ``r`` rows (``b * r <= num_perm``) minimising
    ``w_fp * FP + w_fn * FN``, with ``FP`` the area under the banding S-curve
    ``P(s) = 1 - (1 - s^r)^b`` below the threshold and ``FN`` the area of
    ``1 - P(s)`` above it: the criterion of datasketch's ``_optimal_param``.
    False negatives weigh 0.9 by default because every candidate is verified
    exactly afterwards: a false positive costs one comparison, a false
    negative a missed duplicate. Defaults (128 signatures): threshold 0.7 gives
    20 bands of 6 rows, 0.8 gives 14 of 9, 0.9 gives 8 of 16.

    Parameters
    ----------
    threshold : float
        Similarity at which two texts count as duplicates (Jaccard for
        MinHash; for SimHash the per-bit collision probability).
    num_perm : int
        Signature length (MinHash values or SimHash bits).
    false_negative_weight : float, default=0.9
        Weight of missed pairs; false positives get ``1 - weight``.

    Returns
    -------
    bands : int
    rows : int
    """
    below = np.linspace(0.0, threshold, 201)
    above = np.linspace(threshold, 1.0, 201)
    best, best_cost = (1, num_perm), np.inf
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_pos = np.trapezoid(1 - (1 - below**rows) ** bands, below)
            false_neg = np.trapezoid((1 - above**rows) ** bands, above)
            cost = (1 - false_negative_weight) * false_pos + false_negative_weight * false_neg
            if cost < best_cost:
                best, best_cost = (bands, rows), cost
    return best


def lsh_bands(threshold: float, num_perm: int, false_negative_weight: float = 0.9) -> int:
    """Number of LSH bands :func:`lsh_params` chooses (rows: ``lsh_params(...)[1]``).

    Parameters
    ----------
    threshold : float
        Jaccard similarity at which two texts count as duplicates.
    num_perm : int
        MinHash signature length.
    false_negative_weight : float, default=0.9
        Weight of missed pairs; false positives get ``1 - weight``.

    Returns
    -------
    int
        Number of bands.
    """
    return lsh_params(threshold, num_perm, false_negative_weight)[0]


def _record_text(record: Record, text_key: str, position: int) -> str:
    if "id" not in record:
        raise KeyError(f"record {position} has no 'id'")
    if text_key not in record:
        raise KeyError(f"record {position} (id {record['id']!r}) has no {text_key!r} field")
    return str(record[text_key] or "")


@dataclass(frozen=True)
class TextSignature:
    """What near-duplicate detection needs of one text; computed per record, so per shard in parallel.

    Attributes
    ----------
    digest : 16-byte BLAKE2b of the normalised text (exact duplicates).
    shingles : sorted distinct uint64 hashes of its character shingles
        (exact Jaccard of LSH candidates).
    minhash : its R-MinHash signature, ``num_perm`` uint32 values (LSH bands).
    """

    digest: bytes
    shingles: np.ndarray
    minhash: np.ndarray


def text_signatures(texts: list[str], num_perm: int = 128, ngram: int = 5) -> list[TextSignature]:
    """The :class:`TextSignature` of each text (the map step of :func:`deduplicate`).

    Parameters
    ----------
    texts : list of str
        Texts to sign.
    num_perm : int, default=128
        MinHash signature length.
    ngram : int, default=5
        Characters per shingle.

    Returns
    -------
    list of TextSignature
        One per text, in order; depends only on the text, so signing shards
        separately gives the signatures of signing them all at once.
    """
    import rensa

    shingles = char_shingles(texts, ngram)
    offsets = np.concatenate(([0], np.cumsum([len(s) for s in shingles]))).astype(np.uint64)
    flat = np.concatenate(shingles) if shingles else np.zeros(0, dtype=np.uint64)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets, num_perm, MINHASH_SEED)
    minhashes = np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(texts), num_perm)
    return [TextSignature(hashlib.blake2b(normalise_text(text).encode("utf-8"), digest_size=16).digest(),
                          own, minhash)
            for text, own, minhash in zip(texts, shingles, minhashes)]


def _band_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, group) pairs of rows sharing a band key with another row, sorted by row.

    ``keys`` is (rows, bands) uint64; a group is one (band, key) held by two
    rows or more. Singleton buckets, most of them, cost nothing later.
    """
    rows_out, groups_out, next_group = [], [], 0
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        ordered = keys[order, band]
        new = np.concatenate(([True], ordered[1:] != ordered[:-1]))
        group = np.cumsum(new) - 1
        sizes = np.bincount(group)
        shared = sizes[group] >= 2
        rows_out.append(order[shared])
        groups_out.append(group[shared] + next_group)
        next_group += len(sizes)
    rows, groups = np.concatenate(rows_out), np.concatenate(groups_out)
    order = np.argsort(rows, kind="stable")
    return rows[order], groups[order]


def _band_keys(values: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 key per band: a polynomial hash of the band's ``rows`` values (salted by band)."""
    keys = np.zeros((values.shape[0], bands), dtype=np.uint64)
    for band in range(bands):
        key = np.full(values.shape[0], band + 1, dtype=np.uint64)
        for column in range(band * rows, (band + 1) * rows):
            key = key * _BAND_BASE + values[:, column].astype(np.uint64)
        keys[:, band] = key
    return keys


def _sequential_pass(candidates_of, n: int, similarity, threshold: float) -> list[tuple[int, int, float]]:
    """Keep-first pass: ``(index, kept index, similarity)`` of every index removed.

    ``candidates_of`` maps an index to its LSH groups; each group lists the
    kept indices seen so far, so buckets of removed records never grow.
    """
    members: dict[int, list[int]] = {}
    removed = []
    for index in range(n):
        groups = candidates_of(index)
        if groups is None:
            continue
        seen: set[int] = set()
        best, best_similarity = -1, -1.0
        for group in groups:
            for other in members.get(group, ()):
                if other in seen:
                    continue
                seen.add(other)
                value = similarity(index, other)
                if value > best_similarity or (value == best_similarity and other < best):
                    best, best_similarity = other, value
        if best >= 0 and best_similarity >= threshold:
            removed.append((index, best, best_similarity))
        else:
            for group in groups:
                members.setdefault(group, []).append(index)
    return removed


def _groups_by_row(rows: np.ndarray, groups: np.ndarray, n: int):
    starts = np.searchsorted(rows, np.arange(n + 1))
    groups = groups.tolist()
    return lambda index: groups[starts[index]:starts[index + 1]]


def semantic_candidates_params(threshold: float, bits: int) -> tuple[int, int]:
    """SimHash bands and rows for a cosine threshold (per-bit collision ``1 - arccos(c)/pi``).

    Parameters
    ----------
    threshold : float
        Cosine similarity at which two texts count as duplicates.
    bits : int
        Random hyperplanes (signature bits).

    Returns
    -------
    bands : int
    rows : int
    """
    return lsh_params(round(1.0 - float(np.arccos(threshold)) / np.pi, 6), bits)


def semantic_duplicates(embeddings: np.ndarray, threshold: float, active: np.ndarray | None = None,
                        bits: int = 256, seed: int = SIMHASH_SEED) -> list[tuple[int, int, float]]:
    """Keep-first semantic near-duplicates by cosine similarity, via SimHash LSH banding.

    Each embedding gets ``bits`` sign bits from seeded random hyperplanes;
    bands of those bits (:func:`semantic_candidates_params`) propose
    candidates, and a candidate is a duplicate when its **exact** cosine with
    an earlier kept embedding is at or above ``threshold``. Memory is linear
    in the rows (never an n×n matrix).

    Parameters
    ----------
    embeddings : ndarray of shape (n, d)
        One embedding per record (normalised here).
    threshold : float
        Cosine similarity at or above which a record duplicates an earlier one.
    active : ndarray of bool or None, default=None
        Rows taking part (e.g. those the lexical pass kept); ``None``: all.
    bits : int, default=256
        Random hyperplanes.
    seed : int, default=SIMHASH_SEED
        Seed of the hyperplanes.

    Returns
    -------
    list of (int, int, float)
        ``(row, kept row, cosine)`` for every row removed, in row order.
    """
    vectors = np.asarray(embeddings, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"embeddings must be 2-D, got shape {vectors.shape}")
    n = len(vectors)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    active = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    bands, rows = semantic_candidates_params(threshold, bits)
    planes = np.random.default_rng(seed).standard_normal((vectors.shape[1], bands * rows)).astype(np.float32)
    signs = (vectors @ planes > 0).astype(np.uint64)
    keys = _band_keys(signs, bands, rows)
    index = np.flatnonzero(active)
    group_rows, groups = _band_groups(keys[index])
    lookup = _groups_by_row(group_rows, groups, len(index))

    def similarity(a: int, b: int) -> float:
        return float(vectors[index[a]] @ vectors[index[b]])

    return [(int(index[a]), int(index[b]), value)
            for a, b, value in _sequential_pass(lookup, len(index), similarity, threshold)]


def deduplicate(records: list[Record], text_key: str = "question", threshold: float = 0.7,
                num_perm: int = 128, ngram: int = 5, signatures: list[TextSignature] | None = None,
                embeddings: np.ndarray | None = None, semantic_threshold: float | None = None
                ) -> tuple[list[Record], list[Record]]:
    """Remove exact, near and (optionally) semantic duplicate records, keeping the first occurrence.

    Parameters
    ----------
    records : list of dict
        Records with an ``"id"`` and a ``text_key`` field, in priority order
        (earlier records win).
    text_key : str, default="question"
        Field whose text is compared.
    threshold : float, default=0.7
        A record is a near duplicate of an earlier kept one when the exact
        Jaccard similarity of their character-shingle sets (numbers masked)
        is ``>= threshold``.
    num_perm : int, default=128
        MinHash signature length (LSH candidate recall grows with it).
    ngram : int, default=5
        Characters per shingle.
    signatures : list of TextSignature or None, default=None
        The records' signatures from :func:`text_signatures` with the same
        ``num_perm`` and ``ngram``, when they were computed elsewhere (e.g.
        per shard on Ray workers); ``None`` computes them here.
    embeddings : ndarray of shape (n_records, d) or None, default=None
        Sentence embeddings of the records' texts, for the semantic pass.
    semantic_threshold : float or None, default=None
        Cosine similarity at or above which a record that survived the exact
        and near passes duplicates an earlier kept one; ``None`` (default)
        skips the semantic pass. Needs ``embeddings``.

    Returns
    -------
    kept : list of dict
        The records kept, unchanged and in input order.
    removed : list of dict
        One entry per removed record: ``{"id", "duplicate_of", "similarity",
        "kind", "text"}`` with ``kind`` ``"exact"``, ``"near"`` (similarity:
        exact Jaccard) or ``"semantic"`` (similarity: cosine);
        ``duplicate_of`` is always the id of a kept record.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if semantic_threshold is not None:
        if not 0.0 < semantic_threshold <= 1.0:
            raise ValueError(f"semantic_threshold must be in (0, 1], got {semantic_threshold}")
        if embeddings is None or len(embeddings) != len(records):
            raise ValueError("the semantic pass needs one embedding per record")
    texts = [_record_text(record, text_key, i) for i, record in enumerate(records)]
    if signatures is None:
        signatures = text_signatures(texts, num_perm, ngram)
    elif len(signatures) != len(records):
        raise ValueError(f"{len(signatures)} signatures for {len(records)} records")

    # exact: the first record of each normalised text; later ones point to it
    first_of: dict[bytes, int] = {}
    exact_of = np.full(len(records), -1, dtype=np.int64)
    for index, signature in enumerate(signatures):
        exact_of[index] = first_of.setdefault(signature.digest, index)
    unique = np.flatnonzero((exact_of == np.arange(len(records)))
                            & np.array([len(s.shingles) > 0 for s in signatures], dtype=bool))
    # near: LSH bands over the MinHash signatures of the distinct texts, exact Jaccard on candidates
    target = np.arange(len(records))  # kept index each record maps to
    similarity_of = np.ones(len(records))
    kind_of = ["exact"] * len(records)
    if len(unique):
        bands, rows = lsh_params(threshold, num_perm)
        matrix = np.stack([signatures[i].minhash for i in unique])
        group_rows, groups = _band_groups(_band_keys(matrix, bands, rows))
        lookup = _groups_by_row(group_rows, groups, len(unique))

        def jaccard(a: int, b: int) -> float:
            first, second = signatures[unique[a]].shingles, signatures[unique[b]].shingles
            shared = len(np.intersect1d(first, second, assume_unique=True))
            return shared / (len(first) + len(second) - shared)

        for a, b, value in _sequential_pass(lookup, len(unique), jaccard, threshold):
            target[unique[a]], similarity_of[unique[a]], kind_of[unique[a]] = unique[b], value, "near"
    if semantic_threshold is not None:
        active = target == np.arange(len(records))
        active &= exact_of == np.arange(len(records))
        for a, b, value in semantic_duplicates(embeddings, semantic_threshold, active):
            target[a], similarity_of[a], kind_of[a] = b, value, "semantic"
        for index in range(len(records)):  # a near copy of a record the semantic pass removed
            target[index] = target[target[index]]  # points to where that one went (targets come earlier)
    kept, removed = [], []
    for index, record in enumerate(records):
        first = exact_of[index]
        if first != index:  # an exact copy points where its first occurrence went
            kept_index = target[first]
            similarity, kind = (similarity_of[first], kind_of[first]) if kept_index != first else (1.0, "exact")
        elif target[index] != index:
            kept_index, similarity, kind = target[index], similarity_of[index], kind_of[index]
        else:
            kept.append(record)
            continue
        removed.append({"id": record["id"], "duplicate_of": records[kept_index]["id"],
                        "similarity": round(float(similarity), 4), "kind": kind, "text": texts[index]})
    return kept, removed
