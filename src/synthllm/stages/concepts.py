"""Concept extraction (SPEC §1, Level-2 step 1): level, subject, 1-5 topics, key concepts per topic."""

from __future__ import annotations

from ..io import truncate_text
from .base import ModelStage, Record
from .parsing import parse_concepts


class ExtractConcepts(ModelStage):
    """Document in; ``{"id": doc id, "level", "subject", "topics": [{"topic", "concepts"}]}`` out.

    Parameters
    ----------
    sampling : sampling parameters of the call.
    max_document_chars : the document is cut to this length in the prompt (see ``io.truncate_text``).
    """

    name = "concepts"
    template_name = "concepts"
    prefill = "<level>"

    def __init__(self, sampling, prompt_version=None, max_document_chars: int = 6000,
                 grammar_version: str | None = None, topics: tuple[int, int] = (1, 5),
                 concepts: tuple[int, int] = (5, 20)):
        self.max_document_chars = max_document_chars
        self.topic_range, self.concept_range = tuple(topics), tuple(concepts)
        for what, (low, high) in (("topics", self.topic_range), ("concepts", self.concept_range)):
            if not 1 <= low <= high:
                raise ValueError(f"{what} range must satisfy 1 <= min <= max, got {low}-{high}")
        super().__init__(sampling, prompt_version, grammar_version)

    def grammar_fields(self) -> dict:
        """The numbered topic and concept lines: one alternative per topic count, concepts nested optional."""
        (t_min, t_max), (c_min, c_max) = self.topic_range, self.concept_range
        rules = []
        for k in range(1, t_max + 1):
            rules.append(f'topic-line-{k} ::= "{k}. " name "\\n"')
            tail = ""
            for m in range(c_max, c_min, -1):  # concepts c_min+1 .. c_max, each optional after the one before
                tail = f'("{k}.{m}. " name "\\n"{(" " + tail) if tail else ""})?'
            required = " ".join(f'"{k}.{m}. " name "\\n"' for m in range(1, c_min + 1))
            rules.append(f'concept-block-{k} ::= "{k}. " name "\\n" {required}{(" " + tail) if tail else ""}')
        for t in range(t_min, t_max + 1):
            lines = " ".join(f"topic-line-{k}" for k in range(1, t + 1))
            blocks = " ".join(f"concept-block-{k}" for k in range(1, t + 1))
            rules.append(f'topics-{t} ::= "<topic>\\n" {lines} "</topic>\\n<key_concept>\\n" {blocks} "</key_concept>"')
        choices = " | ".join(f"topics-{t}" for t in range(t_min, t_max + 1))
        return {"min_topics": t_min, "max_topics": t_max, "min_concepts": c_min, "max_concepts": c_max,
                "topic_choices": f"({choices})", "topic_rules": "\n".join(rules)}

    def stop_sequences(self) -> tuple[str, ...]:
        return ("</key_concept>",)

    def build(self, record: Record) -> list[dict]:
        return self.template.render(document=truncate_text(record["text"], self.max_document_chars))

    def parse(self, record: Record, texts: list[str]) -> list[Record]:
        parsed = parse_concepts(texts[0])
        return [{
            "id": record["id"],
            "doc_id": record["id"],
            **parsed,
            "n_concepts": sum(len(t["concepts"]) for t in parsed["topics"]),
        }]
