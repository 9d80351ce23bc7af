"""Training sets, nested subsets and benchmark items.

A training set is read once into ``(prompt messages, assistant answer)`` pairs
and shuffled with ``subset_seed``; the subset of size n is its first n samples,
so every subset contains the smaller ones (SPEC §4) and the evaluation samples
taken from the front of the order are inside every subset. Token sizes count
the chat-formatted prompt and answer exactly as the trainer sees them (before
truncation to ``max_length``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["BenchItem", "Sample", "load_benchmark", "load_samples", "plan_sizes", "shuffled"]

QUESTION_FIELDS = ("question", "problem", "prompt", "instruction", "input")
ANSWER_FIELDS = ("answer", "solution", "response", "completion", "output")


@dataclass(frozen=True)
class Sample:
    """One training sample: the conversation before the answer, and the answer."""

    prompt: tuple[tuple[str, str], ...]
    answer: str

    def prompt_dicts(self) -> list[dict]:
        return [{"role": role, "content": content} for role, content in self.prompt]

    def question(self) -> str:
        """The last user message (what the entropy proxies condition on)."""
        return next((content for role, content in reversed(self.prompt) if role == "user"), "")


def _rows(path: Path) -> list[tuple[int, dict]]:
    """(line or row number, record) of a run folder, Parquet file or JSONL file."""
    from ..io import iter_jsonl

    if path.is_dir():
        from ..store import RunStore

        rows = RunStore(path).dataset_rows()
        if not rows:
            raise InputError.at(path, "run folder has no dataset yet (dataset.jsonl missing or empty)")
        return list(enumerate(rows, start=1))
    if not path.is_file():
        raise InputError.at(path, "training data not found")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(enumerate(pq.read_table(path).to_pylist(), start=1))
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise InputError.at(path, f"not a readable Parquet file ({exc})") from None
    rows, line = [], 0
    for record in iter_jsonl(path):
        line += 1
        rows.append((line, record))
    return rows


def _sample(record: dict, path: Path, line: int) -> Sample:
    messages = record.get("messages")
    if isinstance(messages, str):
        messages = json.loads(messages)
    if messages:
        pairs = [(str(m.get("role", "")), str(m.get("content", ""))) for m in messages]
        last = max((i for i, (role, _) in enumerate(pairs) if role == "assistant"), default=None)
        if last is None or last == 0:
            raise InputError.at(path, "messages has no assistant turn after a prompt", line=line, field="messages")
        return Sample(tuple(pairs[:last]), pairs[last][1])
    question = next((record[f] for f in QUESTION_FIELDS if isinstance(record.get(f), str) and record[f].strip()), None)
    answer = next((record[f] for f in ANSWER_FIELDS if isinstance(record.get(f), str) and record[f].strip()), None)
    if question is None or answer is None:
        raise InputError.at(path, "row has neither messages nor question and answer fields "
                            f"(found: {', '.join(sorted(record)) or 'none'})", line=line)
    return Sample((("user", question),), answer)


def load_samples(path: str | Path, limit: int | None = None) -> list[Sample]:
    """Read a training set.

    Parameters
    ----------
    path : str or Path
        A synthllm run folder (its ``dataset.jsonl``), or a Parquet/JSONL file
        with ``messages`` or question/answer fields.
    limit : int, optional
        Keep the first ``limit`` rows.

    Returns
    -------
    list of Sample

    Raises
    ------
    InputError
        Naming the file and line of an unusable row.
    """
    path = Path(path)
    rows = _rows(path)[: limit or None]
    samples = [_sample(record, path, line) for line, record in rows]
    if not samples:
        raise InputError.at(path, "no training samples")
    return samples


def shuffled(items: list, seed: int) -> list:
    """``items`` in a seeded random order (the order that defines the nested subsets)."""
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[int(i)] for i in order]


def plan_sizes(token_counts: list[int], sizes, data_name: str) -> list[tuple[int, int]]:
    """The (samples, tokens) of each subset.

    Parameters
    ----------
    token_counts : list of int
        Tokens of each sample, in the shuffled order.
    sizes : SizesConfig
        The requested sizes (samples or tokens; explicit or geometric).
    data_name : str
        Name of the set, for error messages.

    Returns
    -------
    list of (int, int)
        Sorted, distinct ``(samples, tokens)``; ``(0, 0)`` first when ``include_zero``.
    """
    cumulative = np.cumsum(token_counts)
    available = len(token_counts) if sizes.unit == "samples" else int(cumulative[-1])
    if sizes.values:
        requested = sorted(set(sizes.values))
        if requested[-1] > available:
            raise InputError.at(f"sizes.values", f"{requested[-1]} {sizes.unit} requested but {data_name} has "
                                f"{available}")
    else:
        requested, value = [], float(sizes.smallest)
        for _ in range(sizes.count):
            if round(value) >= available:
                requested.append(available)
                break
            requested.append(int(round(value)))
            value *= sizes.factor
    plan = [(0, 0)] if sizes.include_zero else []
    for size in requested:
        if size <= 0:
            raise InputError.at("sizes.values", f"sizes must be > 0 (size 0 is include_zero), got {size}")
        if sizes.unit == "samples":
            samples = size
        else:  # the shortest prefix reaching `size` tokens
            samples = int(np.searchsorted(cumulative, size) + 1)
        entry = (samples, int(cumulative[samples - 1]))
        if entry not in plan:
            plan.append(entry)
    return plan


# -- benchmarks -------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchItem:
    """One benchmark problem: question, reference solution (scored for the loss), final answer (graded)."""

    question: str
    solution: str
    final: str


_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_final(text: str) -> str | None:
    """The final answer after the last ``####`` (commas in numbers removed), or None."""
    if "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip().replace(",", "")


def _text(value) -> str | None:
    if isinstance(value, list):
        value = "\n".join(str(v) for v in value if v is not None)
    if value is None:
        return None
    return str(value) if str(value).strip() else None


def load_benchmark(spec) -> list[BenchItem]:
    """Read a benchmark file into items (in file order).

    Parameters
    ----------
    spec : BenchmarkSpec
        Path and optional field names.

    Returns
    -------
    list of BenchItem

    Raises
    ------
    InputError
        Naming the file and line of an item without question or answer.
    """
    path = Path(spec.path)
    items = []
    for line, record in _rows(path):
        question = _text(record.get(spec.question_field)) if spec.question_field else \
            next((_text(record.get(f)) for f in ("question", "problem") if _text(record.get(f))), None)
        if spec.answer_field:
            solution = _text(record.get(spec.answer_field))
        else:
            solution = next((_text(record.get(f)) for f in ("solution", "answer") if _text(record.get(f))), None)
        if not question or not solution:
            raise InputError.at(path, "benchmark item lacks a question or a solution", line=line)
        if spec.final_answer_field:
            final = _text(record.get(spec.final_answer_field))
        elif _text(record.get("final_answer")):
            final = _text(record.get("final_answer"))
        elif _text(record.get("answer")) and solution != _text(record.get("answer")):
            final = _text(record.get("answer"))
        else:
            final = gsm8k_final(solution) or solution
        if not final:
            raise InputError.at(path, "benchmark item has no final answer", line=line)
        items.append(BenchItem(question, solution, final))
    if not items:
        raise InputError.at(path, "benchmark has no items")
    return items
