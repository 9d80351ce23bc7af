"""Decontamination of generated samples against benchmark test sets.

By default the SPEC's six benchmarks are checked, each when its file is in the
shared data folder (:func:`shared_benchmark_specs`): GSM8K, MATH,
Minerva-Math, OlympiadBench, CollegeMath and Gaokao-2023-En test sets. Two
steps, so that a shared textbook formula is not mistaken for a leak:

1. **Candidates.** Every benchmark text (e.g. GSM8K question and answer,
   MATH problem and solution) is tokenised into lower-case words and numbers;
   every number becomes one placeholder token (so a copy with changed numbers
   still matches), and its token ``ngram``-grams (default 13) are hashed into
   a sorted index. A sample field is a candidate for a benchmark text when
   they share one such n-gram (or, for short and formula problems, a
   ``verify_ngram``-gram), or one whole sentence of a problem shorter than
   ``ngram`` tokens (numbers kept; a sentence ends at ``.``, ``?`` or ``!``
   outside a number): moving a sentence breaks every n-gram across its ends,
   and in a problem of two short sentences ("Let $f(x)=2x-4$ and
   $g(x)=x^2+3$. What is $f(g(2))$?") every 13-gram. Tokenising, hashing and
   lookup are vectorised with numpy over whole batches of texts.
2. **Verification.** For each candidate pair the decontaminator measures how
   much of the *benchmark text* the sample covers, with ``verify_ngram``-grams
   (default 6):

   - ``raw coverage``: share of the benchmark text's tokens that lie in a
     k-gram (numbers kept) also found in the sample, or, for a problem, in
     one of its sentences shorter than k tokens that the sample holds as a
     whole sentence ("What is $f(g(2))$?" lies in no k-gram of its own: with
     the sentences reordered only the k-grams across its ends held it);
   - ``normalised coverage``: the same with numbers replaced. For an answer
     or solution it counts only when it reaches ``answer_masked_coverage``
     (0.9) on an answer of ``min_answer_tokens`` (40) tokens or more: two
     solutions of one template with other numbers ("He has $2 in quarters
     because 8 times .25 equals 2 ...", 0.84) solve different problems.
     For a prose problem (at least ``min_prose`` of its non-number tokens are
     words) the matched *evidence* k-grams (found in fewer than
     ``common_items`` benchmark items and mostly prose words) must cover
     ``min_distinctive`` (0.4) of it. A problem holding a formula, of
     ``formula_min_tokens`` (10) tokens or more, gets a *second look*: its
     normalised coverage counts when it reaches ``formula_coverage`` (0.9) and
     every formula of the problem (``$...$``, ``\\[...\\]``) appears in the
     sample with the same shape (operators, brackets and LaTeX kept, numbers
     masked). A copy with other numbers keeps the shapes; another exercise of
     the same template does not: ``x^{-2}-6x^{-1}+9`` is not ``x^2-4x-32``,
     though their tokens agree once numbers are replaced. The second look is
     evidence of a copy only when the problem's form is distinctive *within
     its benchmark*: when ``template_items`` (3) problems or more share it,
     the benchmark holds a template family, and a text of that form with
     other numbers is a sibling exercise. Sharing the whole masked text,
     one-letter variables masked too (CollegeMath's "Find the product:
     $(4m-8n)(4m+8n)$", "$(7a+7b)(7a-7b)$", "$(2u+3v)(8u-7v)$"), the second
     look does not count; sharing the wording outside the formulas ("Rewrite
     the sum using summation notation: ..."), it counts only on a complete
     match (coverage 1.0: a textbook's "Write the sum ..." is a sibling).

   The pair is a leak when either coverage reaches ``min_coverage`` (default
   0.7) or the benchmark text has a stretch of ``min_span`` tokens (default
   50; numbers kept) whose every k-gram occurs in the sample.

Short texts. A problem shorter than ``ngram`` tokens leaks only when the
sample covers all of it (and, holding a formula, all its formulas as written);
one of ``min_short_run`` to ``verify_ngram - 1`` tokens is found as a run
inside a longer text ("Compute $\\tan 45^\\circ$." wrapped in a request).
An answer shorter than ``ngram`` tokens never matches on its own, and one
shorter than ``min_answer_tokens`` (40) only on its numbers-kept coverage: a
short answer is generic ("Together, they have 5 + 2 = 7 cards. #### 7"
matched a GSM8K-train answer with other numbers; CollegeMath's "$x=2$" would
match textbook lines). Such an item is found through its question.

Measured (``bench/bench_quality_recall.py``, ``bench/results/quality.md``):
of all 4,752 MATH test problems holding a number, with every number changed,
91.1 % are caught as that item (92.0 % flagged; 60.8 % before the second
look; the template-family rule loses none of them); of 600 random MATH test
problems, verbatim 100 %, wrapped 99.7-99.8 %, last sentence moved to the
front 100 % on seeds 0-3 (97.5-99.0 % before whole sentences counted; of all
2,394 MATH test problems of two sentences or more, 100 %, before 98.5 %);
GSM8K 100 % for each. False hits: on 11,197 OpenStax sentences holding a formula,
one, a CollegeMath system of equations that the textbook prints with the same
numbers (a real overlap; the two same-template exercises flagged before the
template-family rule are no longer); on the 14,946 GSM8K-train questions and
answers, 4 questions, all same-template twins of GSM8K-test items.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..io import read_jsonl

Record = dict[str, Any]

_TOKEN = re.compile(rb"[a-z]+|[0-9]+(?:[.,][0-9]+)*")
#: odd 64-bit multiplier of the polynomial rolling hash
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)
_CHAR_BASE = np.uint64(0x100000001B3)
_CHAR_BASE_INVERSE = np.uint64(pow(int(_CHAR_BASE), -1, 2**64))
_NUMBER_HASH = np.uint64(0x5BD1E9955BD1E995)
_FILTER_BITS = 24
#: odd multiplier that mixes a text's index into its k-gram hashes (joint membership tests)
_TEXT_SALT = np.uint64(0xD6E8FEB86659FD93)
#: byte class: 1 for a-z, 2 for 0-9, 0 for everything else (text is lower-cased first)
_CHAR_KIND = np.zeros(256, dtype=np.int8)
_CHAR_KIND[ord("a"):ord("z") + 1] = 1
_CHAR_KIND[ord("0"):ord("9") + 1] = 2


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

    Looks at ``$SYNTHLLM_DATA`` first, then at ``../shared/data`` next to
    the repository root (where this repository's development checkout keeps
    it). Installed elsewhere, neither exists: pass benchmark paths instead.

    Returns
    -------
    Path or None
        The folder, or ``None`` when neither exists.
    """
    candidates = []
    if os.environ.get("SYNTHLLM_DATA"):
        candidates.append(Path(os.environ["SYNTHLLM_DATA"]))
    candidates.append(Path(__file__).resolve().parents[3].parent / "shared" / "data")
    return next((path for path in candidates if path.is_dir()), None)


#: the SPEC's decontamination benchmarks: (name, file under the shared data folder, fields, id field)
SHARED_BENCHMARKS = (
    ("gsm8k", "gsm8k/test.jsonl", ["question", "answer"], None),
    ("math", "math/test.jsonl", ["problem", "solution"], "idx"),
    ("minerva_math", "minerva_math/test.jsonl", ["problem", "solution"], "idx"),
    ("olympiadbench", "olympiadbench/test.jsonl", ["question", "solution", "final_answer"], "id"),
    ("college_math", "college_math/test.jsonl", ["question", "answer"], None),
    ("gaokao2023en", "gaokao2023en/test.jsonl", ["question", "answer"], None),
)


def shared_benchmark_specs(data_dir: Path | None = None) -> list[BenchmarkSpec]:
    """The SPEC's six decontamination benchmarks found in the shared data folder.

    GSM8K test, MATH test, Minerva-Math, OlympiadBench, CollegeMath and
    Gaokao-2023-En (:data:`SHARED_BENCHMARKS`), each when its file exists.
    They are read at run time, never shipped with the package.

    Parameters
    ----------
    data_dir : Path or None, default=None
        Folder holding ``gsm8k/test.jsonl``, ``math/test.jsonl``,
        ``minerva_math/test.jsonl``, ``olympiadbench/test.jsonl``,
        ``college_math/test.jsonl`` and ``gaokao2023en/test.jsonl``;
        ``None`` uses :func:`shared_data_dir`.

    Returns
    -------
    list of BenchmarkSpec
        The specs whose files exist (possibly empty).
    """
    data_dir = Path(data_dir) if data_dir is not None else shared_data_dir()
    if data_dir is None:
        return []
    specs = [BenchmarkSpec(name, data_dir / relative, list(fields), id_field)
             for name, relative, fields, id_field in SHARED_BENCHMARKS]
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


_POWER_TABLES: list[np.ndarray] = []


def _power_tables(length: int) -> tuple[np.ndarray, np.ndarray]:
    """``_CHAR_BASE ** i`` and its inverse mod 2**64 for i < length (cached, grown on demand)."""
    if not _POWER_TABLES or len(_POWER_TABLES[0]) < length:
        size = max(length, 1 << 20, 2 * len(_POWER_TABLES[0]) if _POWER_TABLES else 0)
        powers = np.cumprod(np.full(size, _CHAR_BASE, dtype=np.uint64))
        inverse = np.cumprod(np.full(size, _CHAR_BASE_INVERSE, dtype=np.uint64))
        one = np.ones(1, dtype=np.uint64)
        _POWER_TABLES[:] = [np.concatenate((one, powers[:-1])), np.concatenate((one, inverse[:-1]))]
    return _POWER_TABLES[0], _POWER_TABLES[1]


class _TokenStream:
    """Vectorised tokenisation of many texts at once (same tokens as :func:`tokenize`).

    Attributes: ``raw_hashes`` (uint64 hash per token), ``hashes`` (the same
    with every number given one hash), ``is_word`` (the token is a prose word),
    ``text_of_token`` (index of the text each token belongs to) and
    ``counts`` (tokens per text).
    """

    def __init__(self, texts: list[str]):
        encoded = [text.lower().encode("utf-8") for text in texts]
        lengths = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=len(encoded))
        # a separator before every text and one at the end: each token run ends at a boundary
        text_starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        chars = np.frombuffer(b"\n" + b"\n".join(encoded) + b"\n", dtype=np.uint8)
        kind = _CHAR_KIND[chars]
        separators = np.flatnonzero((chars == 46) | (chars == 44))  # '.' or ','
        separators = separators[(separators > 0) & (separators < len(chars) - 1)]
        kind[separators[(kind[separators - 1] == 2) & (kind[separators + 1] == 2)]] = 2
        bounds = np.flatnonzero(kind[1:] != kind[:-1]) + 1
        is_token = kind[bounds[:-1]] != 0
        starts, ends = bounds[:-1][is_token], bounds[1:][is_token]
        # position-independent polynomial hash of each token's bytes via prefix sums mod 2**64
        powers, inverse_powers = _power_tables(len(chars) + 1)
        prefix = np.empty(len(chars) + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(chars * powers[1:len(chars) + 1], out=prefix[1:])
        hashes = (prefix[ends] - prefix[starts]) * inverse_powers[starts]
        self.raw_hashes = hashes
        self.hashes = np.where(kind[starts] == 2, _NUMBER_HASH, hashes)
        # prose words: letter runs of 3+ characters that are not LaTeX commands (\frac)
        self.is_word = (kind[starts] == 1) & (ends - starts >= 3) & (chars[starts - 1] != ord("\\"))
        # texts start at byte text_starts + 1; few texts, many tokens: search the texts in the tokens
        self.offsets = np.append(np.searchsorted(starts, text_starts + 1), len(starts))
        self.counts = np.diff(self.offsets)
        self.text_of_token = np.repeat(np.arange(len(texts)), self.counts)
        # sentences: a token starts one when its text starts there or the gap before it holds . ? !
        # (a '.' inside a number is not in a gap): reordering sentences keeps each one whole
        marks = np.flatnonzero((chars == 46) | (chars == 63) | (chars == 33))  # . ? !
        marks = marks[kind[marks] == 0]
        first = np.zeros(len(starts) + 1, dtype=bool)
        first[np.searchsorted(starts, marks)] = True
        first = first[:-1]
        first[self.offsets[:-1][self.counts > 0]] = True
        self.sentence_starts = np.flatnonzero(first)
        self.sentence_lengths = np.diff(np.append(self.sentence_starts, len(starts)))

    def ngrams(self, ngram: int, numbers_replaced: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of the n-grams that lie inside one text, and the index of their first token."""
        combined = _kgram_hashes(self.hashes if numbers_replaced else self.raw_hashes, ngram)
        inside = np.flatnonzero(self.text_of_token[:len(combined)] == self.text_of_token[ngram - 1:])
        return combined[inside], inside

    def sentence_runs(self, below: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hashes (numbers kept) of the whole sentences shorter than ``below`` tokens, their first token and length.

        A sentence's hash is that of the n-gram of all its tokens, so equal
        sentences have equal hashes wherever they stand in their texts.
        """
        short = self.sentence_lengths < below
        starts, lengths = self.sentence_starts[short], self.sentence_lengths[short]
        combined = np.zeros(len(starts), dtype=np.uint64)
        last = len(self.raw_hashes) - 1
        for offset in range(int(lengths.max()) if len(lengths) else 0):
            active = offset < lengths
            step = combined * _HASH_BASE + self.raw_hashes[np.minimum(starts + offset, last)]
            combined = np.where(active, step, combined)
        return combined, starts, lengths


@dataclass(frozen=True)
class _TextSpans:
    """Tokens per benchmark text and the offset of its first token (what verification needs of the stream)."""

    counts: np.ndarray
    offsets: np.ndarray


@dataclass(frozen=True)
class _Entry:
    benchmark: str
    benchmark_id: str
    benchmark_field: str
    text: str


def _kgram_hashes(tokens: np.ndarray, k: int) -> np.ndarray:
    """Rolling hashes of every k-gram of one token-hash sequence."""
    count = len(tokens) - k + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    combined = np.zeros(count, dtype=np.uint64)
    for offset in range(k):  # uint64 arithmetic wraps: a hash modulo 2**64
        combined = combined * _HASH_BASE + tokens[offset:offset + count]
    return combined


def _unique_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (first, second) pairs, sorted by first then second."""
    order = np.lexsort((second, first))
    first, second = first[order], second[order]
    new = np.ones(len(first), dtype=bool)
    new[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return first[new], second[new]


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: faster than np.unique's hashing on large uint64 arrays)."""
    values = np.sort(values)
    if len(values) == 0:
        return values
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


def _unique_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and how often each occurs."""
    values = np.sort(values)
    if len(values) == 0:
        return values, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    return values[starts], np.diff(np.append(starts, len(values)))


def _member(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """Mask of ``values`` found in the sorted, duplicate-free array ``sorted_unique``."""
    if len(sorted_unique) == 0:
        return np.zeros(len(values), dtype=bool)
    slots = np.minimum(np.searchsorted(sorted_unique, values), len(sorted_unique) - 1)
    return sorted_unique[slots] == values


class Decontaminator:
    """N-gram index over benchmark texts with an extent check on every candidate.

    Parameters
    ----------
    specs : list of BenchmarkSpec
        Benchmarks to index.
    ngram : int, default=13
        Token n-gram length of the candidate index (numbers replaced, and
        numbers kept).
    verify_ngram : int, default=6
        Token k-gram length used to measure how much of a benchmark text a
        sample covers; also the index n-gram of benchmark texts shorter than
        ``ngram``.
    min_coverage : float, default=0.7
        Coverage of the benchmark text at or above which a candidate is a leak.
    min_span : int, default=50
        Span at or above which a candidate is a leak whatever its coverage (a
        long verbatim passage of a long solution): the longest stretch of the
        benchmark text (numbers kept) whose every k-gram occurs in the sample.
    common_items : int, default=3
        An n-gram found in this many benchmark items or more is generic: it
        proposes no candidate and does not count as evidence.
    min_distinctive : float, default=0.4
        Share of a benchmark text that matched evidence k-grams (distinctive
        and at least half prose words) must cover for its normalised
        coverage to count.
    min_prose : float, default=0.5
        Share of prose words (letter runs of 3+ characters that are not LaTeX
        commands) among the non-number tokens of a benchmark text that it
        needs for its numbers to be replaced in the check: in a word problem
        the numbers are parameters, in a formula they are the content.
    min_shared : int, default=3
        A prose benchmark text sharing no ``ngram``-gram with a sample is
        still a candidate when they share this many distinctive
        ``verify_ngram``-grams (numbers replaced): reordered sentences break
        every 13-gram of a short word problem.
    max_candidates : int, default=5
        Benchmark texts verified per sample field (those sharing the most
        n-grams with it).
    formula_coverage : float, default=0.9
        Normalised coverage (numbers replaced) a problem holding a formula
        needs for the second look to count it; its formulas must also appear
        in the sample with the same shape.
    formula_min_tokens : int, default=10
        Shortest problem (in tokens) that gets the second look: shorter
        formula exercises ("Convert $\\frac{63}{5}$ to a mixed number.") are,
        with other numbers, just the textbook exercise of that kind.
    min_short_run : int, default=4
        Problems of this many tokens up to ``verify_ngram - 1`` are also found
        as one run of all their tokens (numbers kept) inside a longer sample;
        a problem's sentences of this many tokens up to ``ngram - 1`` propose
        it as a candidate when the sample holds one of them as a sentence.
    min_answer_tokens : int, default=40
        Non-first fields (answers, solutions) shorter than this leak only on
        their numbers-kept coverage (under ``ngram`` tokens they never match
        alone): a short answer is generic.
    answer_masked_coverage : float, default=0.9
        Numbers-replaced coverage a longer answer needs for it to count.
    template_items : int, default=3
        Size from which problems of one benchmark sharing a form are a
        template family, whose members' look-alikes with other numbers are
        sibling exercises rather than copies: a problem whose whole text
        (numbers and one-letter variables masked) is shared by this many gets
        no second look; one whose wording outside its formulas is shared by
        this many gets it only on a complete match.
    batch_chars : int, default=4_000_000
        Characters tokenised per vectorised batch (bounds memory).

    Attributes
    ----------
    n_items : dict
        Items read per benchmark name.
    """

    def __init__(self, specs: list[BenchmarkSpec], ngram: int = 13, verify_ngram: int = 6,
                 min_coverage: float = 0.7, min_span: int = 50, common_items: int = 3,
                 min_distinctive: float = 0.4, min_prose: float = 0.5, min_shared: int = 3,
                 max_candidates: int = 5, formula_coverage: float = 0.9, formula_min_tokens: int = 10,
                 min_short_run: int = 4, min_answer_tokens: int = 40, answer_masked_coverage: float = 0.9,
                 template_items: int = 3, batch_chars: int = 4_000_000):
        if not specs:
            raise ValueError("no benchmarks to decontaminate against")
        if verify_ngram > ngram:
            raise ValueError(f"verify_ngram ({verify_ngram}) must not exceed ngram ({ngram})")
        self.specs = list(specs)
        self.ngram = ngram
        self.verify_ngram = verify_ngram
        self.min_coverage = min_coverage
        self.min_span = min_span
        self.common_items = common_items
        self.min_distinctive = min_distinctive
        self.min_shared = min_shared
        self.min_prose = min_prose
        self.max_candidates = max_candidates
        self.formula_coverage = formula_coverage
        self.formula_min_tokens = formula_min_tokens
        self.min_short_run = min_short_run
        self.min_answer_tokens = min_answer_tokens
        self.answer_masked_coverage = answer_masked_coverage
        self.template_items = template_items
        self.batch_chars = batch_chars
        self.n_items: dict[str, int] = {}
        self._entries: list[_Entry] = []
        self._short_texts: dict[str, int] = {}
        self._build()

    def _build(self) -> None:
        texts, items, primary = [], [], []
        for spec in self.specs:
            rows = read_jsonl(spec.path)
            self.n_items[spec.name] = len(rows)
            for line_index, row in enumerate(rows):
                if spec.id_field and spec.id_field not in row:
                    raise ValueError(f"{spec.path}:{line_index + 1}: no id field {spec.id_field!r}")
                item_id = str(row[spec.id_field]) if spec.id_field else str(line_index)
                for field_name in spec.text_fields:
                    if field_name not in row:
                        raise ValueError(f"{spec.path}:{line_index + 1}: no field {field_name!r}")
                    value = row[field_name]
                    # list fields (OlympiadBench's solutions and final answers) are joined
                    text = "\n".join(map(str, value)) if isinstance(value, list) else str(value or "")
                    texts.append(text)
                    primary.append(field_name == spec.text_fields[0])
                    items.append(len(self.n_items) * 10**9 + line_index)
                    self._entries.append(_Entry(spec.name, item_id, field_name, text))
        stream = _TokenStream(texts)
        self._stream = stream  # replaced by its per-text counts and offsets at the end of the build
        self._entry_is_long = stream.counts >= self.ngram
        words = np.bincount(stream.text_of_token, weights=stream.is_word, minlength=len(texts))
        letter_runs = np.bincount(stream.text_of_token, weights=stream.raw_hashes == stream.hashes,
                                  minlength=len(texts))
        self._entry_is_prose = self._entry_is_long & (words >= self.min_prose * np.maximum(letter_runs, 1))
        entry_items = np.asarray(items, dtype=np.uint64)
        # the candidate indexes hold only distinctive n-grams (found in fewer than
        # common_items benchmark items): boilerplate and generic formulas propose nothing.
        # long texts: ngram-grams, numbers replaced and kept; mid-length ones:
        # verify_ngram-grams, numbers kept; the shortest: their whole token sequence
        # a short answer ("Together, they have 5 + 2 = 7 cards", "$x=2$") is generic: only
        # the first field of an item (its question or problem) may match when short
        self._entry_is_primary = np.asarray(primary, dtype=bool)
        mid = (stream.counts >= self.verify_ngram) & ~self._entry_is_long & self._entry_is_primary
        # an answer shorter than min_answer_tokens ("Together, they have 5 + 2 = 7 cards. #### 7")
        # leaks on its own only on its numbers-kept coverage (see _verify)
        self._entry_is_short_answer = ~self._entry_is_primary & (stream.counts < self.min_answer_tokens)
        indexed_long = self._entry_is_long
        # problems that are mostly formula (not prose) get a second look with numbers replaced:
        # "Find cot(3pi/2)" with other numbers is the same exercise when the whole of it matches
        has_formula = np.fromiter((bool(_formula_segments(text)) for text in texts), dtype=bool, count=len(texts))
        # short problems holding a formula: a match must hold their formulas too (shapes, numbers masked)
        self._entry_needs_shape = has_formula & self._entry_is_primary & (stream.counts < 2 * self.ngram)
        self._entry_is_formula = ((stream.counts >= max(self.formula_min_tokens, self.verify_ngram))
                                  & self._entry_is_primary & (~self._entry_is_prose | has_formula))
        # template families (problems of one benchmark sharing a form, template_items of them or more): a
        # text matching a member with other numbers is as likely a sibling exercise as a copy.
        # - same form: the whole problem, numbers and one-letter variables masked ("Find the product:
        #   $(4m-8n)(4m+8n)$", "$(7a+7b)(7a-7b)$", "$(2u+3v)(8u-7v)$"): the second look does not count;
        # - same wording outside the formulas ("Rewrite the sum using summation notation: ..."): the
        #   second look counts only on a complete match (a sibling differs somewhere, "Write the sum ...")
        benchmark_of = [item // 10**9 for item in items]
        forms = [_template_form(text) if is_primary else "" for text, is_primary in zip(texts, primary)]
        stems = [_stem(text) if is_primary else "" for text, is_primary in zip(texts, primary)]
        form_sizes = Counter(zip(benchmark_of, forms))
        stem_sizes = Counter(zip(benchmark_of, stems))
        self._entry_in_form_family = np.array([bool(form) and form_sizes[bench, form] >= self.template_items
                                               for bench, form in zip(benchmark_of, forms)], dtype=bool)
        self._entry_in_stem_family = np.array([bool(stem) and stem_sizes[bench, stem] >= self.template_items
                                               for bench, stem in zip(benchmark_of, stems)], dtype=bool)
        # (n, numbers replaced, distinct hits a candidate needs, index); n = 0: whole sentences (below)
        self._indexes = [
            (self.ngram, True, 1, self._index(stream, self.ngram, True, indexed_long, entry_items)),
            (self.ngram, False, 1, self._index(stream, self.ngram, False, indexed_long, entry_items)),
            (self.verify_ngram, True, self.min_shared, self._index(stream, self.verify_ngram, True,
                                                                  self._entry_is_prose & indexed_long,
                                                                  entry_items)),
            (self.verify_ngram, False, 1, self._index(stream, self.verify_ngram, False, mid, entry_items)),
            (self.verify_ngram, True, 1, self._index(stream, self.verify_ngram, True, self._entry_is_formula,
                                                     entry_items)),
        ]
        # whole sentences of problems, shorter than ngram tokens (numbers kept): moving a sentence breaks
        # every n-gram across its ends, and in a short problem ("Let $f(x)=2x-4$ and $g(x)=x^2+3$. What is
        # $f(g(2))$?") every one of them. Sentences of min_short_run+ tokens propose candidates (the
        # sample's own sentences are looked up); those under verify_ngram tokens ("What is $f(g(2))$?",
        # no k-gram inside them) cover their tokens in the check when the sample holds them as a sentence
        runs, run_starts, run_lengths = stream.sentence_runs(self.ngram)
        run_entries = stream.text_of_token[run_starts]
        self._indexes.append((0, False, 1, self._index_of(
            runs, run_entries, self._entry_is_primary[run_entries] & (run_lengths >= self.min_short_run),
            entry_items)))
        sentences = np.bincount(stream.text_of_token[stream.sentence_starts], minlength=len(texts))
        short = ((run_lengths < self.verify_ngram) & self._entry_is_primary[run_entries]
                 & (sentences[run_entries] >= 2))
        self._sentence_hashes = runs[short]
        self._sentence_offsets = (run_starts[short] - stream.offsets[run_entries[short]]).astype(np.int32)
        self._sentence_lengths = run_lengths[short].astype(np.int32)
        self._sentence_bounds = np.searchsorted(run_entries[short], np.arange(len(texts) + 1))
        for entry_index in np.flatnonzero((stream.counts > 0) & (stream.counts < self.verify_ngram)
                                          & self._entry_is_primary):
            self._short_texts.setdefault(" ".join(tokenize(texts[entry_index])), int(entry_index))
        # short problems of min_short_run+ tokens ("Compute $\\tan 45^\\circ$.") are also found inside a longer
        # text, as one run of all their tokens, numbers kept: length -> (sorted hashes, entries)
        self._short_runs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for length in range(self.min_short_run, self.verify_ngram):
            chosen = np.flatnonzero((stream.counts == length) & self._entry_is_primary)
            if len(chosen) == 0:
                continue
            run_hashes = _kgram_hashes(stream.raw_hashes, length)[stream.offsets[chosen]]
            order = np.argsort(run_hashes, kind="stable")
            self._short_runs[length] = (run_hashes[order], chosen[order])
        # k-grams of every benchmark text, with numbers kept and replaced, for the verification
        k = self.verify_ngram
        self._bench_raw = _kgram_hashes(stream.raw_hashes, k)
        self._bench_norm = _kgram_hashes(stream.hashes, k)
        # evidence k-grams (numbers replaced): distinctive (in fewer than common_items items)
        # and mostly prose words
        hashes, first_tokens = stream.ngrams(k, True)
        common = self._common_hashes(hashes, stream.text_of_token[first_tokens], entry_items)
        wordy = np.convolve(stream.is_word.astype(np.int64), np.ones(k, dtype=np.int64), "valid") * 2 >= k
        self._bench_distinctive = ~_member(self._bench_norm, common)
        self._bench_evidence = self._bench_distinctive & wordy[:len(self._bench_norm)]
        # the verification needs only where each benchmark text's tokens lie: keep the index small
        # (it is pickled to every worker)
        self._stream = _TextSpans(stream.counts, stream.offsets)

    def _common_hashes(self, hashes: np.ndarray, entries: np.ndarray, entry_items: np.ndarray) -> np.ndarray:
        """Sorted hashes (of n-grams of the given entries) found in ``common_items`` benchmark items or more."""
        hashes, _ = _unique_pairs(hashes, entry_items[entries])
        unique_hashes, counts = _unique_counts(hashes)
        return unique_hashes[counts >= self.common_items]

    def _index(self, stream: "_TokenStream", ngram: int, numbers_replaced: bool, selected: np.ndarray,
               entry_items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sorted unique distinctive (n-gram hash, entry) pairs of the selected texts, and a presence table."""
        hashes, first_tokens = stream.ngrams(ngram, numbers_replaced)
        entries = stream.text_of_token[first_tokens]
        return self._index_of(hashes, entries, selected[entries], entry_items)

    def _index_of(self, hashes: np.ndarray, entries: np.ndarray, selected: np.ndarray, entry_items: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The index of the selected (hash, entry) pairs whose hash is distinctive, with its presence table."""
        keep = selected & ~_member(hashes, self._common_hashes(hashes, entries, entry_items))
        index_hashes, index_entries = _unique_pairs(hashes[keep], entries[keep])
        # a 2**24-bit presence table (2 MB, cache-friendly) on the top hash bits answers most
        # lookups of absent n-grams
        present = np.zeros(1 << _FILTER_BITS, dtype=bool)
        present[index_hashes >> np.uint64(64 - _FILTER_BITS)] = True
        return index_hashes, index_entries.astype(np.int32), np.packbits(present, bitorder="little")

    @property
    def n_ngrams(self) -> int:
        """Number of (n-gram, benchmark text) pairs in the indexes."""
        return sum(len(index[0]) for *_, index in self._indexes)

    @staticmethod
    def _lookup(index: tuple[np.ndarray, np.ndarray, np.ndarray], hashes: np.ndarray, texts_of: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """(text, entry) pairs for every query n-gram found in the index."""
        index_hashes, index_entries, present = index
        slots = hashes >> np.uint64(64 - _FILTER_BITS)
        maybe = (present[slots >> np.uint64(3)] >> (slots & np.uint64(7)).astype(np.uint8)) & 1 == 1
        hashes, texts_of = hashes[maybe], texts_of[maybe]
        if len(index_hashes) == 0 or len(hashes) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        low = np.searchsorted(index_hashes, hashes, side="left")
        found = index_hashes[np.minimum(low, len(index_hashes) - 1)] == hashes
        low, hashes, texts_of = low[found], hashes[found], texts_of[found]
        repeat = np.searchsorted(index_hashes, hashes, side="right") - low
        slots = np.repeat(low - np.cumsum(repeat) + repeat, repeat) + np.arange(repeat.sum())
        return np.repeat(texts_of, repeat), index_entries[slots]

    def _candidates(self, stream: "_TokenStream", runs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(text, entry) candidate pairs: the ``max_candidates`` entries sharing most n-grams with each text.

        ``runs`` are the texts' sentences shorter than ``ngram`` (:meth:`_TokenStream.sentence_runs`,
        computed when ``None``), looked up in the index of whole sentences (``ngram`` 0 in ``_indexes``).
        """
        if runs is None:
            runs = stream.sentence_runs(self.ngram)
        n_entries = len(self._entries)
        key_parts, count_parts = [], []
        for ngram, numbers_replaced, min_hits, index in self._indexes:
            if ngram == 0:
                hashes, first_tokens = runs[0], runs[1]
            else:
                hashes, first_tokens = stream.ngrams(ngram, numbers_replaced)
            found_texts, found_entries = self._lookup(index, hashes, stream.text_of_token[first_tokens])
            keys, counts = _unique_counts(found_texts * n_entries + found_entries)
            key_parts.append(keys[counts >= min_hits])
            count_parts.append(counts[counts >= min_hits])
        keys, counts = np.concatenate(key_parts), np.concatenate(count_parts)
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        new = np.concatenate(([True], keys[1:] != keys[:-1])) if len(keys) else np.zeros(0, dtype=bool)
        counts = np.add.reduceat(counts, np.flatnonzero(new)) if len(keys) else counts
        keys = keys[new]
        texts, entries = keys // n_entries, keys % n_entries
        order = np.lexsort((-counts, texts))
        texts, entries = texts[order], entries[order]
        group_start = np.flatnonzero(np.concatenate(([True], texts[1:] != texts[:-1])))
        rank = np.arange(len(texts)) - np.repeat(group_start, np.diff(np.append(group_start, len(texts))))
        keep = rank < self.max_candidates
        return texts[keep], entries[keep]

    def _verify(self, stream: "_TokenStream", texts: np.ndarray, entries: np.ndarray,
                runs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Coverage, span, verdict and need of a formula check of every (text, entry) pair, all pairs at once.

        Each pair gets a segment as long as its benchmark text: its k-gram
        flags followed by ``k - 1`` zeros, so that a convolution marks the
        covered tokens without leaking from one pair into the next. A
        problem's sentence shorter than k tokens, which no k-gram of its own
        covers, counts as covered (numbers kept) when the text holds it as a
        whole sentence (``runs``: the texts' sentence runs,
        :meth:`_TokenStream.sentence_runs`, computed when ``None``): its
        sentences moved around, a problem keeps all of them.
        """
        if runs is None:
            runs = stream.sentence_runs(self.ngram)
        k = self.verify_ngram
        lengths = self._stream.counts[entries]
        n_kgrams = np.maximum(lengths - k + 1, 0)
        segment_starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        total = int(lengths.sum())
        # positions of each pair's benchmark k-grams, in the benchmark stream and in the layout
        pair_of = np.repeat(np.arange(len(entries)), n_kgrams)
        within = np.arange(int(n_kgrams.sum())) - np.repeat(np.cumsum(n_kgrams) - n_kgrams, n_kgrams)
        bench_positions = self._stream.offsets[entries][pair_of] + within
        layout = segment_starts[pair_of] + within
        # membership of (text, k-gram) pairs: mix the text index into the hash
        text_salt = (texts[pair_of].astype(np.uint64) + np.uint64(1)) * _TEXT_SALT
        all_raw, all_norm = _kgram_hashes(stream.raw_hashes, k), _kgram_hashes(stream.hashes, k)
        sample_raw, sample_norm = self._sample_keys(stream, np.unique(texts), all_raw, all_norm, k)

        def coverage_of(found: np.ndarray, also: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
            flags = np.zeros(total, dtype=np.int64)
            flags[layout[found]] = 1
            covered = (np.convolve(flags, np.ones(k, dtype=np.int64))[:total] > 0).astype(np.int64)
            if also is not None:
                covered[also] = 1
            sums = np.add.reduceat(covered, segment_starts) if total else np.zeros(0, dtype=np.int64)
            return np.where(lengths > 0, sums / np.maximum(lengths, 1), 0.0), flags

        raw_found = _member(self._bench_raw[bench_positions] + text_salt, sample_raw)
        coverage, raw_flags = coverage_of(raw_found, self._sentences_held(stream, texts, entries, segment_starts,
                                                                          runs))
        span = self._longest_runs(raw_flags, segment_starts)
        span = np.where(span > 0, span + k - 1, 0)
        prose = self._entry_is_prose[entries]
        formula = self._entry_is_formula[entries]
        on_masked = (prose | formula)[pair_of]
        norm_found = np.zeros(len(pair_of), dtype=bool)
        norm_found[on_masked] = _member(self._bench_norm[bench_positions[on_masked]] + text_salt[on_masked],
                                        sample_norm)
        evidence_share, _ = coverage_of(norm_found & self._bench_evidence[bench_positions])
        distinctive_share, _ = coverage_of(norm_found & self._bench_distinctive[bench_positions])
        norm_coverage, _ = coverage_of(norm_found)
        # numbers replaced count for problems only: two solutions of one template with other numbers
        # ("He has $2 in quarters because 8 times .25 equals 2") solve different problems
        primary = self._entry_is_primary[entries]
        masked_counts = (prose & (evidence_share >= self.min_distinctive)
                         & (primary | (norm_coverage >= self.answer_masked_coverage))) | (
            formula & ~self._entry_in_form_family[entries]
            & (norm_coverage >= np.where(self._entry_in_stem_family[entries], 1.0, self.formula_coverage)))
        raw_coverage = coverage
        coverage = np.where(masked_counts, np.maximum(coverage, norm_coverage), coverage)
        tiny = lengths < k  # reached only through an exact match of the whole short text
        coverage[tiny] = 1.0
        span[tiny] = lengths[tiny]
        long_entry = self._entry_is_long[entries]
        leak = np.where(long_entry, (coverage >= self.min_coverage) | (span >= self.min_span), coverage >= 1.0)
        raw_leak = np.where(long_entry, (raw_coverage >= self.min_coverage) | (span >= self.min_span),
                            raw_coverage >= 1.0)
        short_answer = self._entry_is_short_answer[entries]
        leak[short_answer] = raw_leak[short_answer]
        # a formula problem that leaks only with its numbers replaced, or a short problem with a
        # formula, gets a look at its formulas ("Find the domain of the function: <formula>" is generic)
        needs_shape = leak & ((formula & ~raw_leak) | self._entry_needs_shape[entries]) & ~tiny
        return coverage, span, leak, needs_shape

    def _sentences_held(self, stream: "_TokenStream", texts: np.ndarray, entries: np.ndarray,
                        segment_starts: np.ndarray, runs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """Layout positions of the tokens of each pair's short problem sentences that its text holds whole."""
        low, high = self._sentence_bounds[entries], self._sentence_bounds[entries + 1]
        counts = high - low
        if counts.sum() == 0:
            return np.zeros(0, dtype=np.int64)
        pair_of = np.repeat(np.arange(len(entries)), counts)
        index = np.repeat(low - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        salt = lambda positions: (positions.astype(np.uint64) + np.uint64(1)) * _TEXT_SALT  # noqa: E731
        run_hashes, run_starts, run_lengths = runs
        short = run_lengths < self.verify_ngram
        held = _sorted_unique(run_hashes[short] + salt(stream.text_of_token[run_starts[short]]))
        found = _member(self._sentence_hashes[index] + salt(texts[pair_of]), held)
        starts = segment_starts[pair_of[found]] + self._sentence_offsets[index[found]]
        sizes = self._sentence_lengths[index[found]]
        return np.repeat(starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(int(sizes.sum()))

    @staticmethod
    def _sample_keys(stream: "_TokenStream", positions: np.ndarray, all_raw: np.ndarray, all_norm: np.ndarray,
                     k: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique salted k-gram hashes (numbers kept, replaced) of the given texts."""
        lows = stream.offsets[positions]
        counts = np.maximum(stream.offsets[positions + 1] - k + 1 - lows, 0)
        index = np.repeat(lows - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        salt = (np.repeat(positions, counts).astype(np.uint64) + np.uint64(1)) * _TEXT_SALT
        return _sorted_unique(all_raw[index] + salt), _sorted_unique(all_norm[index] + salt)

    @staticmethod
    def _longest_runs(flags: np.ndarray, segment_starts: np.ndarray) -> np.ndarray:
        """Longest run of ones inside each segment (segments end in zeros, so runs never cross)."""
        longest = np.zeros(len(segment_starts), dtype=np.int64)
        edges = np.flatnonzero(np.diff(np.concatenate(([0], flags, [0]))))
        run_starts, run_ends = edges[::2], edges[1::2]
        if len(run_starts):
            segment = np.searchsorted(segment_starts, run_starts, side="right") - 1
            np.maximum.at(longest, segment, run_ends - run_starts)
        return longest

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
            with the highest coverage (``score``), else ``None``.
        """
        results: list[dict | None] = [None] * len(texts)
        for batch in _batches(texts, self.batch_chars):
            batch_texts = [texts[i] for i in batch]
            stream = _TokenStream(batch_texts)
            runs = stream.sentence_runs(self.ngram)
            pair_texts, pair_entries = self._candidates(stream, runs)
            tiny_texts, tiny_entries = [], []
            for position in np.flatnonzero((stream.counts > 0) & (stream.counts < self.verify_ngram)).tolist():
                entry_index = self._short_texts.get(" ".join(tokenize(batch_texts[position])))
                if entry_index is not None:
                    tiny_texts.append(position)
                    tiny_entries.append(entry_index)
            for length, (run_hashes, run_entries) in self._short_runs.items():
                hashes, first_tokens = stream.ngrams(length, numbers_replaced=False)
                slots = np.minimum(np.searchsorted(run_hashes, hashes), len(run_hashes) - 1)
                for token, entry_index in zip(first_tokens[run_hashes[slots] == hashes].tolist(),
                                              run_entries[slots[run_hashes[slots] == hashes]].tolist()):
                    position = int(stream.text_of_token[token])
                    # its formulas must be in the sample as written (numbers kept, spaces aside):
                    # "Simplify: $\\sqrt{72}$" is not inside "Simplify: $\\sqrt{72n^{7}}$"
                    if _formulas_within(self._entries[entry_index].text, batch_texts[position], numbers=True):
                        tiny_texts.append(position)
                        tiny_entries.append(entry_index)
            pair_texts = np.concatenate([pair_texts, np.asarray(tiny_texts, dtype=np.int64)])
            pair_entries = np.concatenate([pair_entries, np.asarray(tiny_entries, dtype=np.int64)])
            if len(pair_texts) == 0:
                continue
            coverage, span, leak, needs_shape = self._verify(stream, pair_texts, pair_entries, runs)
            for pair in np.flatnonzero(leak).tolist():
                position, entry = int(pair_texts[pair]), self._entries[int(pair_entries[pair])]
                if needs_shape[pair] and not _formulas_within(entry.text, batch_texts[position]):
                    continue
                match = {"benchmark": entry.benchmark, "benchmark_id": entry.benchmark_id,
                         "benchmark_field": entry.benchmark_field, "matched_text": entry.text,
                         "score": round(float(coverage[pair]), 4), "longest_span": int(span[pair])}
                current = results[batch[position]]
                if current is None or (match["score"], match["longest_span"]) > (current["score"],
                                                                                 current["longest_span"]):
                    results[batch[position]] = match
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
            "score", "longest_span"}`` for its field with the highest coverage.
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


_MATH_SEGMENT = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\[(.+?)\\\]|\\\((.+?)\\\)", re.DOTALL)
_SPACE = re.compile(r"\s+")
_PROSE_RUN = re.compile(r"(?<![\\\w])[A-Za-z]{2,}\s+[A-Za-z]{2,}\s+[A-Za-z]{2,}\b")
_DIGITS = re.compile(r"[0-9]+(?:[.,][0-9]+)*")


def _shape(text: str, numbers: bool = False) -> str:
    """Lower-cased text without whitespace, each number ``0`` unless ``numbers``: what a numbers-changed copy keeps."""
    text = _SPACE.sub("", text.lower())
    return text if numbers else _DIGITS.sub("0", text)


def _masked_tokens(text: str, letters: bool = False) -> str:
    """The text's tokens with each number ``0`` (and, with ``letters``, each one-letter token ``v``)."""
    return " ".join("0" if token[0].isdigit() else "v" if letters and len(token) == 1 else token
                    for token in tokenize(text))


def _stem(text: str) -> str:
    """A problem's wording outside its formulas, numbers masked: what a template family's members share."""
    def outside(match: re.Match) -> str:
        segment = next(group for group in match.groups() if group is not None)
        return match.group(0) if _PROSE_RUN.search(segment) else " "  # "$2 ... $8" is prose, not a formula
    return _masked_tokens(_MATH_SEGMENT.sub(outside, text))


def _template_form(text: str) -> str:
    """A problem as tokens with numbers and one-letter variables masked: ``(4m-8n)(4m+8n)`` is ``(7a+7b)(7a-7b)``."""
    return _masked_tokens(text, letters=True)


def _formulas_within(benchmark_text: str, sample_text: str, numbers: bool = False) -> bool:
    """Whether every formula of the benchmark text (``$...$``, ``\\[...\\]``) has its shape in the sample.

    Operators, brackets and LaTeX layout survive a change of numbers but
    differ between two exercises of one template (``x^{-2}-6x^{-1}+9`` is not
    ``x^2 - 4x - 32``, though both are ``x <num> <num> x ...`` as tokens).
    """
    sample = _shape(sample_text, numbers)
    return all(_shape(segment, numbers) in sample for segment in _formula_segments(benchmark_text))


def _formula_segments(text: str) -> list[str]:
    """The formulas of a text: ``$...$``, ``$$...$$``, ``\\[...\\]`` and ``\\(...\\)`` contents.

    A ``$`` pair enclosing three plain words in a row is prose between two
    dollar amounts (GSM8K's "$2 more than twice ... has $8"), not a formula.
    """
    segments = (next(group for group in match.groups() if group is not None)
                for match in _MATH_SEGMENT.finditer(text))
    return [segment for segment in segments if segment.strip() and not _PROSE_RUN.search(segment)]


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
