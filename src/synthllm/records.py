"""The records that flow between steps: the contract between steps and with their readers.

Every step writes dicts of one of these shapes into its shards (JSON lines);
every reader (the next step, curation, the report, the dataset card, the
study) reads them through :class:`~synthllm.store.RunStore`. They are
``TypedDict`` s: the data stays plain JSON on disk and costs nothing at run
time, while the shape is written down once and checked by type checkers and
by ``tests/test_records.py`` against a real (scripted) run.
"""

from __future__ import annotations

from typing import Any, TypedDict

from typing_extensions import NotRequired

#: a record as steps pass it around: a plain JSON object (its shape is one of the TypedDicts below)
Record = dict[str, Any]


class Document(TypedDict):
    """A corpus document (``stages/documents``, ``stages/filter``)."""

    id: str
    text: str
    meta: NotRequired[dict[str, Any]]  # the corpus record's other fields (title, source, license, ...)


class TopicConcepts(TypedDict):
    topic: str
    concepts: list[str]


class Concepts(TypedDict):
    """One document's concept extraction (``stages/concepts``)."""

    id: str
    doc_id: str
    level: str | None
    subject: str | None
    topics: list[TopicConcepts]
    n_concepts: int


class Walk(TypedDict):
    """One concept combination K_g with its reference documents (``stages/walks``)."""

    id: str
    walk: list[str]
    walk_detail: dict[str, Any]
    groups: list[TopicConcepts]
    references: list[dict[str, Any]]  # {"doc_id", "score"}


class Question(TypedDict):
    """A generated question with its lineage (``stages/level1|level2|level3``)."""

    id: str
    level: int
    question: str
    concepts: list[str]
    source_doc_ids: list[str]
    walk: list[str] | None
    parent_id: str
    model: str
    prompt_version: str
    seed: int
    difficulty: NotRequired[str | None]
    orig_tag: NotRequired[str | None]


class Sample(Question):
    """An answered question (``stages/answers``)."""

    answer: str
    final_answer: str | None
    agreement: float | None
    answer_prompt_version: str


class Message(TypedDict):
    role: str
    content: str


class DatasetRow(TypedDict):
    """One row of ``dataset.parquet`` / ``dataset.jsonl`` (``messages`` is TRL's conversational format)."""

    id: str
    level: int
    question: str
    answer: str
    final_answer: str | None
    messages: list[Message]
    concepts: list[str]
    source_doc_ids: list[str]
    walk: list[str] | None
    difficulty: str | None
    orig_tag: str | None
    agreement: float | None
    model: str | None
    prompt_version: str | None
    answer_prompt_version: str | None
    seed: int | None


class RemovedRow(DatasetRow):
    """A dataset row that curation removed (``quality/dedup.jsonl``, ``quality/decontam.jsonl``).

    The whole row is kept, so the report can show what was removed by level;
    ``removed_by`` says which check and ``reason`` what it matched:
    for dedup ``{"duplicate_of", "similarity", "kind"}``, for decontamination
    ``{"benchmark", "field", "matched", ...}`` (the decontaminator's match record).
    """

    removed_by: str  # "dedup" | "decontam"
    reason: dict[str, Any]


class Reject(TypedDict):
    """An input a model stage could not use (``stages/<stage>/*.rejects.jsonl``)."""

    id: str
    kind: str  # "unsuitable" | "unparsable" | "failed"
    reason: str
    raw: list[str] | None
