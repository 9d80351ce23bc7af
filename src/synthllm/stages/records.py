"""Record helpers shared by the stages: ids and the question record shape."""

from __future__ import annotations

import hashlib
import json


def stable_id(prefix: str, *parts) -> str:
    """``prefix-`` + 16 hex digits of a hash of ``parts``: equal inputs, equal ids, on any machine."""
    payload = json.dumps(parts, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"{prefix}-{hashlib.sha256(payload.encode('utf-8')).hexdigest()[:16]}"


def question_record(level: int, question: str, index: int, source_doc_ids: list[str], *,
                    parent_id: str, concepts: list[str] | None = None, walk: dict | None = None,
                    **extra) -> dict:
    """One generated question with its lineage; answers are added by the answer stage."""
    return {
        "id": stable_id("q", level, parent_id, index, question),
        "level": level,
        "question": question,
        "concepts": concepts or [],
        "source_doc_ids": source_doc_ids,
        "walk": walk,
        "parent_id": parent_id,
        **extra,
    }


def format_topics(topics: list[dict]) -> str:
    """Topics and their key concepts as the numbered list the prompts show."""
    lines = []
    for number, topic in enumerate(topics, 1):
        lines.append(f"{number}. {topic['topic']}")
        lines.extend(f"   {number}.{sub}. {concept}" for sub, concept in enumerate(topic["concepts"], 1))
    return "\n".join(lines)
