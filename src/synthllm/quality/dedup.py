"""Exact and near-duplicate removal over one text field of a list of records.

One pass in record order, so that the **first occurrence is kept**; each
record is checked against the records kept before it:

1. *Exact*: its normalised text (Unicode NFKC, lower case, punctuation
   dropped, whitespace collapsed) equals an earlier one's.
2. *Near*: MinHash signatures (``rensa``'s R-MinHash, the fastest MinHash
   library that installs here: see ``bench/results/quality.md``) over word
   n-gram shingles, indexed with LSH bands. LSH only proposes candidates; a
   candidate counts as a duplicate when the **exact** Jaccard similarity of
   the two shingle sets reaches the threshold, so the decision does not
   depend on MinHash's estimation noise.

Every removed record is reported with the id of the kept record it
duplicates and the similarity, so nothing disappears silently.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

Record = dict[str, Any]

#: seed of the MinHash permutations; fixed so that runs are reproducible
MINHASH_SEED = 1234

_WORD = re.compile(r"\w+", re.UNICODE)


def normalise_text(text: str) -> str:
    """Canonical form used for exact matching and shingling.

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


def word_shingles(normalised: str, ngram: int) -> set[str]:
    """Word n-grams of a normalised text.

    Parameters
    ----------
    normalised : str
        Output of :func:`normalise_text`.
    ngram : int
        Words per shingle. A text shorter than ``ngram`` words yields one
        shingle holding all its words, so short questions still compare.

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


def lsh_bands(threshold: float, num_perm: int, false_negative_weight: float = 0.7) -> int:
    """Number of LSH bands for a Jaccard threshold.

    Chooses the divisor ``b`` of ``num_perm`` (``r = num_perm / b`` rows per
    band) that minimises the weighted area of false positives below the
    threshold and false negatives above it under the banding S-curve
    ``1 - (1 - s^r)^b`` (the criterion datasketch uses). False negatives
    weigh more by default because candidates are verified exactly anyway.

    Parameters
    ----------
    threshold : float
        Jaccard similarity at which two texts count as duplicates.
    num_perm : int
        MinHash signature length.
    false_negative_weight : float, default=0.7
        Weight of missed pairs; false positives get ``1 - weight``.

    Returns
    -------
    int
        Number of bands (a divisor of ``num_perm``).
    """
    grid_low = np.linspace(0.0, threshold, 200)
    grid_high = np.linspace(threshold, 1.0, 200)
    best_bands, best_cost = 1, np.inf
    for bands in range(1, num_perm + 1):
        if num_perm % bands:
            continue
        rows = num_perm // bands
        false_pos = np.trapezoid(1 - (1 - grid_low**rows) ** bands, grid_low)
        false_neg = np.trapezoid((1 - grid_high**rows) ** bands, grid_high)
        cost = (1 - false_negative_weight) * false_pos + false_negative_weight * false_neg
        if cost < best_cost:
            best_bands, best_cost = bands, cost
    return best_bands


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
    shingles : its word n-gram shingles (exact Jaccard of LSH candidates).
    minhash : its R-MinHash signature (LSH candidates); picklable.
    """

    digest: bytes
    shingles: frozenset[str]
    minhash: Any


def text_signatures(texts: list[str], num_perm: int = 128, ngram: int = 5) -> list[TextSignature]:
    """The :class:`TextSignature` of each text (the map step of :func:`deduplicate`).

    Parameters
    ----------
    texts : list of str
        Texts to sign.
    num_perm : int, default=128
        MinHash signature length.
    ngram : int, default=5
        Words per shingle.

    Returns
    -------
    list of TextSignature
        One per text, in order; depends only on the text, so signing shards
        separately gives the signatures of signing them all at once.
    """
    import rensa

    normalised = [normalise_text(text) for text in texts]
    shingles = [word_shingles(norm, ngram) for norm in normalised]
    minhashes = rensa.RMinHash.from_token_sets([sorted(s) for s in shingles], num_perm, MINHASH_SEED)
    return [TextSignature(hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest(), frozenset(own), minhash)
            for norm, own, minhash in zip(normalised, shingles, minhashes)]


def deduplicate(records: list[Record], text_key: str = "question", threshold: float = 0.8,
                num_perm: int = 128, ngram: int = 5, signatures: list[TextSignature] | None = None
                ) -> tuple[list[Record], list[Record]]:
    """Remove exact and near-duplicate records, keeping the first occurrence.

    Parameters
    ----------
    records : list of dict
        Records with an ``"id"`` and a ``text_key`` field, in priority order
        (earlier records win).
    text_key : str, default="question"
        Field whose text is compared.
    threshold : float, default=0.8
        Jaccard similarity of word-shingle sets at or above which a record is
        a near duplicate of an earlier kept one.
    num_perm : int, default=128
        MinHash signature length (LSH candidate recall grows with it).
    ngram : int, default=5
        Words per shingle.
    signatures : list of TextSignature or None, default=None
        The records' signatures from :func:`text_signatures` with the same
        ``num_perm`` and ``ngram``, when they were computed elsewhere (e.g.
        per shard on Ray workers); ``None`` computes them here.

    Returns
    -------
    kept : list of dict
        The records kept, unchanged and in input order.
    removed : list of dict
        One entry per removed record: ``{"id", "duplicate_of", "similarity",
        "kind", "text"}`` with ``kind`` ``"exact"`` or ``"near"``;
        ``duplicate_of`` is always the id of a kept record.
    """
    import rensa

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    texts = [_record_text(record, text_key, i) for i, record in enumerate(records)]
    if signatures is None:
        signatures = text_signatures(texts, num_perm, ngram)
    elif len(signatures) != len(records):
        raise ValueError(f"{len(signatures)} signatures for {len(records)} records")
    index_lsh = rensa.RMinHashLSH(threshold, num_perm, lsh_bands(threshold, num_perm))
    # normalised-text digest -> (kept id it maps to, similarity, kind); a copy of a
    # removed record points to the kept record that one duplicates
    seen: dict[bytes, tuple[Any, float, str]] = {}
    kept_indices: list[int] = []
    removed: list[Record] = []
    for index, signature in enumerate(signatures):
        own = signature.shingles
        if signature.digest in seen:
            target_id, similarity, kind = seen[signature.digest]
            removed.append({"id": records[index]["id"], "duplicate_of": target_id,
                            "similarity": similarity, "kind": kind, "text": texts[index]})
            continue
        best_similarity, best_index = 0.0, -1
        if own:
            for candidate in sorted(index_lsh.query(signature.minhash)):
                other = signatures[candidate].shingles
                similarity = len(own & other) / len(own | other)
                if similarity > best_similarity:
                    best_similarity, best_index = similarity, candidate
        if best_index >= 0 and best_similarity >= threshold:
            target = (records[best_index]["id"], round(best_similarity, 4), "near")
            seen[signature.digest] = target
            removed.append({"id": records[index]["id"], "duplicate_of": target[0],
                            "similarity": target[1], "kind": "near", "text": texts[index]})
        else:
            seen[signature.digest] = (records[index]["id"], 1.0, "exact")
            kept_indices.append(index)
            if own:
                index_lsh.insert(index, signature.minhash)

    kept = [records[i] for i in kept_indices]
    return kept, removed
