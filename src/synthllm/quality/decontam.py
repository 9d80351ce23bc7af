"""Decontamination of generated samples against benchmark test sets.

Two steps, so that a shared textbook formula is not mistaken for a leak:

1. **Candidates.** Every benchmark text (e.g. GSM8K question and answer,
   MATH problem and solution) is tokenised into lower-case words and numbers,
   every number becomes one placeholder token (so a copy with changed numbers
   still matches), and its token ``ngram``-grams (default 13) are hashed into
   a sorted index. A sample's field is a candidate for a benchmark text when
   they share one such n-gram. Hashing and lookup are vectorised with numpy
   over whole batches of texts.
2. **Verification.** For each candidate pair the decontaminator measures how
   much of the *benchmark text* the sample covers: the share of its tokens
   that lie in a ``verify_ngram``-gram (default 6) also found in the sample,
   plus the longest common token span. The pair is a leak when the coverage
   reaches ``min_coverage`` (default 0.6) or the span reaches ``min_span``
   tokens (default 50). A verbatim copy covers 100 %; changed numbers,
   reordered clauses or an added sentence still cover most of the benchmark
   text; a textbook sentence that happens to share a 13-gram with a long
   MATH problem covers only a small part of it.

Benchmark texts shorter than ``ngram`` tokens can share no n-gram; they are
caught when a sample field equals one of them exactly (after normalisation,
numbers kept, since with numbers replaced most of them would be generic).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

Record = dict[str, Any]

_TOKEN = re.compile(rb"[a-z]+|[0-9]+(?:[.,][0-9]+)*")
#: placeholder that every number becomes
NUMBER_TOKEN = "<num>"
#: odd 64-bit multiplier of the polynomial rolling hash
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)
_CHAR_BASE = np.uint64(0x100000001B3)
_CHAR_BASE_INVERSE = np.uint64(pow(int(_CHAR_BASE), -1, 2**64))
_NUMBER_HASH = np.uint64(0x5BD1E9955BD1E995)


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark test set to decontaminate against.

    Parameters
    ----------
    name : str
        Short name used in reports (``"gsm8k"``).
    path : str or Path
        JSONL file, one benchmark item per line.
    text_fields : list of str
        Fields whose text is indexed (``["question", "answer"]``).
    id_field : str or None, default=None
        Field holding the item's id; ``None`` uses the 0-based line number.
    """

    name: str
    path: str | Path
    text_fields: list[str] = field(default_factory=lambda: ["question"])
    id_field: str | None = None


def shared_data_dir() -> Path | None:
    """The project's shared data folder, if this checkout has one.

    Looks at ``$SYNTHLLM_SHARED_DATA`` first, then at ``../shared/data``
    next to the repository root (where this repository's CI keeps it).

    Returns
    -------
    Path or None
        The folder, or ``None`` when neither exists.
    """
    candidates = []
    if os.environ.get("SYNTHLLM_SHARED_DATA"):
        candidates.append(Path(os.environ["SYNTHLLM_SHARED_DATA"]))
    candidates.append(Path(__file__).resolve().parents[3].parent / "shared" / "data")
    return next((path for path in candidates if path.is_dir()), None)


def shared_benchmark_specs(data_dir: Path | None = None) -> list[BenchmarkSpec]:
    """GSM8K test and MATH test from the shared data folder, where present.

    Parameters
    ----------
    data_dir : Path or None, default=None
        Folder holding ``gsm8k/test.jsonl`` and ``math/test.jsonl``;
        ``None`` uses :func:`shared_data_dir`.

    Returns
    -------
    list of BenchmarkSpec
        The specs whose files exist (possibly empty).
    """
    data_dir = Path(data_dir) if data_dir is not None else shared_data_dir()
    if data_dir is None:
        return []
    specs = [
        BenchmarkSpec("gsm8k", data_dir / "gsm8k" / "test.jsonl", ["question", "answer"]),
        BenchmarkSpec("math", data_dir / "math" / "test.jsonl", ["problem", "solution"], id_field="idx"),
    ]
    return [spec for spec in specs if Path(spec.path).is_file()]


def tokenize(text: str) -> list[str]:
    """Word and number tokens of a text, as the index sees them.

    Lower-cased ASCII letter runs and digit runs (``.``/``,`` between digits
    join a number: ``3.14``, ``1,000``). Everything else, LaTeX backslashes,
    braces and non-ASCII characters included, separates tokens; LaTeX commands
    keep their names (``\\frac`` gives ``frac``).

    Parameters
    ----------
    text : str
        Raw text.

    Returns
    -------
    list of str
        The tokens.
    """
    return [token.decode("ascii") for token in _TOKEN.findall(text.lower().encode("utf-8"))]


def _numbers_replaced(tokens: list[str]) -> list[str]:
    return [NUMBER_TOKEN if token[0].isdigit() else token for token in tokens]


class _TokenStream:
    """Vectorised tokenisation of many texts at once (same tokens as :func:`tokenize`).

    Attributes: ``raw_hashes`` (uint64 hash per token), ``hashes`` (the same
    with every number given one hash), ``text_of_token`` (index of the text each token belongs to) and
    ``counts`` (tokens per text).
    """

    def __init__(self, texts: list[str]):
        encoded = [text.lower().encode("utf-8") for text in texts]
        lengths = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=len(encoded))
        text_starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        chars = np.frombuffer(b"\n".join(encoded) + b"\n", dtype=np.uint8)
        letter = (chars >= 97) & (chars <= 122)
        digit = (chars >= 48) & (chars <= 57)
        joiner = np.zeros_like(digit)
        joiner[1:-1] = ((chars[1:-1] == 46) | (chars[1:-1] == 44)) & digit[:-2] & digit[2:]
        kind = letter.astype(np.int8) + 2 * (digit | joiner).astype(np.int8)
        bounds = np.flatnonzero(np.diff(kind, prepend=np.int8(0), append=np.int8(0)))
        run_starts, run_ends = bounds[:-1], bounds[1:]
        is_token = kind[run_starts] != 0
        starts, ends = run_starts[is_token], run_ends[is_token]
        # position-independent polynomial hash of each token's bytes via prefix sums mod 2**64
        powers = np.cumprod(np.full(len(chars), _CHAR_BASE, dtype=np.uint64))
        inverse_powers = np.cumprod(np.full(len(chars), _CHAR_BASE_INVERSE, dtype=np.uint64))
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(chars.astype(np.uint64) * powers)))
        hashes = (prefix[ends] - prefix[starts]) * np.concatenate(([np.uint64(1)], inverse_powers))[starts]
        self.raw_hashes = hashes
        self.hashes = np.where(kind[starts] == 2, _NUMBER_HASH, hashes)
        self.text_of_token = np.searchsorted(text_starts, starts, side="right") - 1
        self.counts = np.bincount(self.text_of_token, minlength=len(texts))

    def ngrams(self, ngram: int, numbers_replaced: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of the n-grams that lie inside one text, and the index of their first token."""
        tokens = self.hashes if numbers_replaced else self.raw_hashes
        count = len(tokens) - ngram + 1
        if count <= 0:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
        combined = np.zeros(count, dtype=np.uint64)
        for offset in range(ngram):  # uint64 arithmetic wraps: a hash modulo 2**64
            combined = combined * _HASH_BASE + tokens[offset:offset + count]
        inside = np.flatnonzero(self.text_of_token[:count] == self.text_of_token[ngram - 1:])
        return combined[inside], inside


class _Sample:
    """A sample text's tokens and k-gram sets, computed once and reused for every candidate."""

    def __init__(self, text: str):
        self.raw = tokenize(text)
        self._normalised: list[str] | None = None
        self._grams: dict[tuple[int, bool], set] = {}

    def tokens(self, numbers_replaced: bool) -> list[str]:
        if not numbers_replaced:
            return self.raw
        if self._normalised is None:
            self._normalised = _numbers_replaced(self.raw)
        return self._normalised

    def grams(self, k: int, numbers_replaced: bool) -> set:
        key = (k, numbers_replaced)
        if key not in self._grams:
            tokens = self.tokens(numbers_replaced)
            self._grams[key] = {tuple(tokens[i:i + k]) for i in range(len(tokens) - k + 1)}
        return self._grams[key]


def _covered_share(sample_grams: set, bench: list[str], k: int) -> float:
    """Share of ``bench`` tokens inside a k-gram that is also in ``sample_grams``."""
    if len(bench) < k:  # only texts equal to a whole short benchmark text get here
        return 1.0
    covered = np.zeros(len(bench) + 1, dtype=np.int64)
    for start in range(len(bench) - k + 1):
        if tuple(bench[start:start + k]) in sample_grams:
            covered[start] += 1
            covered[start + k] -= 1
    return float((np.cumsum(covered)[:-1] > 0).mean())


def _longest_span(sample: list[str], bench: list[str]) -> int:
    """Length of the longest run of tokens common to both sequences."""
    matcher = difflib.SequenceMatcher(None, sample, bench, autojunk=False)
    return matcher.find_longest_match(0, len(sample), 0, len(bench)).size


def read_jsonl(path: str | Path) -> list[Record]:
    """Read a JSONL file of objects.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    list of dict
        One dict per non-blank line.

    Raises
    ------
    ValueError
        ``"<path>:<line>: ..."`` when a line is not a JSON object.
    """
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


@dataclass(frozen=True)
class _Entry:
    benchmark: str
    benchmark_id: str
    benchmark_field: str
    text: str


class Decontaminator:
    """N-gram index over benchmark texts with an extent check on every candidate.

    Parameters
    ----------
    specs : list of BenchmarkSpec
        Benchmarks to index.
    ngram : int, default=13
        Token n-gram length of the candidate index.
    verify_ngram : int, default=6
        Token k-gram length used to measure how much of a benchmark text a
        sample covers.
    min_coverage : float, default=0.6
        Coverage of the benchmark text at or above which a candidate is a leak.
    min_span : int, default=50
        Longest common token span at or above which a candidate is a leak
        whatever its coverage (long verbatim passages of long solutions).
    max_candidates : int, default=5
        Benchmark texts verified per sample field (those sharing the most
        n-grams with it).
    batch_chars : int, default=4_000_000
        Characters hashed per vectorised batch (bounds memory).

    Attributes
    ----------
    n_items : dict
        Items read per benchmark name.
    """

    def __init__(self, specs: list[BenchmarkSpec], ngram: int = 13, verify_ngram: int = 6,
                 min_coverage: float = 0.6, min_span: int = 50, max_candidates: int = 5,
                 batch_chars: int = 4_000_000):
        if not specs:
            raise ValueError("no benchmarks to decontaminate against")
        self.specs = list(specs)
        self.ngram = ngram
        self.verify_ngram = verify_ngram
        self.min_coverage = min_coverage
        self.min_span = min_span
        self.max_candidates = max_candidates
        self.batch_chars = batch_chars
        self.n_items: dict[str, int] = {}
        self._entries: list[_Entry] = []
        self._short_texts: dict[str, int] = {}
        self._build()

    def _build(self) -> None:
        texts = []
        for spec in self.specs:
            rows = read_jsonl(spec.path)
            self.n_items[spec.name] = len(rows)
            for line_index, row in enumerate(rows):
                item_id = str(row[spec.id_field]) if spec.id_field else str(line_index)
                for field_name in spec.text_fields:
                    if field_name not in row:
                        raise ValueError(f"{spec.path}:{line_index + 1}: no field {field_name!r}")
                    text = str(row[field_name] or "")
                    texts.append(text)
                    self._entries.append(_Entry(spec.name, item_id, field_name, text))
        stream = _TokenStream(texts)
        # long texts: index their ngram-grams; mid-length ones: their verify_ngram-grams;
        # the shortest: their whole token sequence (numbers kept)
        self._long = self._index(stream, self.ngram, stream.counts >= self.ngram, True)
        mid = (stream.counts >= self.verify_ngram) & (stream.counts < self.ngram)
        self._mid = self._index(stream, self.verify_ngram, mid, False)
        self._entry_is_long = stream.counts >= self.ngram
        for entry_index in np.flatnonzero((stream.counts > 0) & (stream.counts < self.verify_ngram)):
            self._short_texts.setdefault(" ".join(tokenize(texts[entry_index])), int(entry_index))

    @staticmethod
    def _index(stream: "_TokenStream", ngram: int, selected: np.ndarray, numbers_replaced: bool
               ) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique (n-gram hash, entry) pairs of the selected texts."""
        hashes, first_tokens = stream.ngrams(ngram, numbers_replaced)
        entries = stream.text_of_token[first_tokens]
        keep = selected[entries]
        pairs = np.unique(np.stack([hashes[keep], entries[keep].astype(np.uint64)], axis=1), axis=0)
        return pairs[:, 0].copy(), pairs[:, 1].astype(np.int64)

    @property
    def n_ngrams(self) -> int:
        """Number of (n-gram, benchmark text) pairs in the indexes."""
        return len(self._long[0]) + len(self._mid[0])

    @staticmethod
    def _lookup(index: tuple[np.ndarray, np.ndarray], hashes: np.ndarray, texts_of: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """(text, entry) pairs for every query n-gram found in the index."""
        index_hashes, index_entries = index
        if len(index_hashes) == 0 or len(hashes) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        low = np.searchsorted(index_hashes, hashes, side="left")
        high = np.searchsorted(index_hashes, hashes, side="right")
        repeat = high - low
        found = repeat > 0
        low, repeat, texts_of = low[found], repeat[found], texts_of[found]
        slots = np.repeat(low - np.cumsum(repeat) + repeat, repeat) + np.arange(repeat.sum())
        return np.repeat(texts_of, repeat), index_entries[slots]

    def _candidates(self, stream: "_TokenStream") -> dict[int, list[int]]:
        """Text position -> benchmark entries sharing an n-gram with it, most shared first."""
        text_parts, entry_parts = [], []
        for index, ngram, numbers_replaced in ((self._long, self.ngram, True),
                                               (self._mid, self.verify_ngram, False)):
            hashes, first_tokens = stream.ngrams(ngram, numbers_replaced)
            found_texts, found_entries = self._lookup(index, hashes, stream.text_of_token[first_tokens])
            text_parts.append(found_texts)
            entry_parts.append(found_entries)
        found_texts, found_entries = np.concatenate(text_parts), np.concatenate(entry_parts)
        if len(found_texts) == 0:
            return {}
        pairs, counts = np.unique(np.stack([found_texts, found_entries], axis=1), axis=0, return_counts=True)
        candidates: dict[int, list[tuple[int, int]]] = {}
        for (text_position, entry_index), count in zip(pairs.tolist(), counts.tolist()):
            candidates.setdefault(text_position, []).append((-count, entry_index))
        return {position: [entry for _, entry in sorted(found)[:self.max_candidates]]
                for position, found in candidates.items()}

    def _verify(self, sample: "_Sample", entry_index: int) -> dict | None:
        entry = self._entries[entry_index]
        # numbers count as one token against long texts only: in a short text they are
        # most of what makes it that problem rather than a generic exercise
        numbers_replaced = bool(self._entry_is_long[entry_index])
        bench_tokens = tokenize(entry.text)
        if numbers_replaced:
            bench_tokens = _numbers_replaced(bench_tokens)
        coverage = _covered_share(sample.grams(self.verify_ngram, numbers_replaced), bench_tokens,
                                  self.verify_ngram)
        if coverage < self.min_coverage and len(bench_tokens) < self.min_span:
            return None
        span = _longest_span(sample.tokens(numbers_replaced), bench_tokens)
        if coverage < self.min_coverage and span < self.min_span:
            return None
        return {"benchmark": entry.benchmark, "benchmark_id": entry.benchmark_id,
                "benchmark_field": entry.benchmark_field, "matched_text": entry.text,
                "score": round(coverage, 4), "longest_span": span}

    def check(self, texts: list[str]) -> list[dict | None]:
        """The best benchmark match of each text, or ``None`` when it is clean.

        Parameters
        ----------
        texts : list of str
            Texts to check (e.g. questions).

        Returns
        -------
        list of dict or None
            Per text: ``{"benchmark", "benchmark_id", "benchmark_field",
            "matched_text", "score", "longest_span"}`` for the verified match
            with the highest coverage, else ``None``.
        """
        results: list[dict | None] = [None] * len(texts)
        for batch in _batches(texts, self.batch_chars):
            batch_texts = [texts[i] for i in batch]
            stream = _TokenStream(batch_texts)
            matches: dict[int, list[dict | None]] = {}
            for position in np.flatnonzero((stream.counts > 0) & (stream.counts < self.verify_ngram)).tolist():
                sample = _Sample(batch_texts[position])
                entry_index = self._short_texts.get(" ".join(sample.tokens(False)))
                if entry_index is not None:
                    matches[position] = [self._verify(sample, entry_index)]
            for position, entries in self._candidates(stream).items():
                sample = _Sample(batch_texts[position])
                matches.setdefault(position, []).extend(self._verify(sample, e) for e in entries)
            for position, found in matches.items():
                verified = [m for m in found if m is not None]
                if verified:
                    results[batch[position]] = max(verified, key=lambda m: (m["score"], m["longest_span"]))
        return results

    def filter(self, records: list[Record], fields: tuple[str, ...] = ("question", "answer")
               ) -> tuple[list[Record], list[Record]]:
        """Drop records any of whose fields leaks a benchmark text.

        Parameters
        ----------
        records : list of dict
            Records with an ``"id"``; fields absent from a record are skipped.
        fields : tuple of str, default=("question", "answer")
            Fields to check.

        Returns
        -------
        kept : list of dict
            Clean records, unchanged and in input order.
        removed : list of dict
            One entry per removed record: ``{"id", "field", "text",
            "benchmark", "benchmark_id", "benchmark_field", "matched_text",
            "score", "longest_span"}`` (the field with the highest coverage).
        """
        texts, owners = [], []
        for index, record in enumerate(records):
            if "id" not in record:
                raise KeyError(f"record {index} has no 'id'")
            for field_name in fields:
                value = record.get(field_name)
                if value:
                    texts.append(str(value))
                    owners.append((index, field_name))
        best: dict[int, dict] = {}
        for text, (index, field_name), match in zip(texts, owners, self.check(texts)):
            if match is None:
                continue
            if index not in best or match["score"] > best[index]["score"]:
                best[index] = {"id": records[index]["id"], "field": field_name, "text": text, **match}
        kept = [record for index, record in enumerate(records) if index not in best]
        return kept, [best[index] for index in sorted(best)]


def _batches(texts: list[str], batch_chars: int) -> Iterable[list[int]]:
    batch, size = [], 0
    for index, text in enumerate(texts):
        batch.append(index)
        size += len(text)
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
