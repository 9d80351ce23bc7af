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

    def __init__(self, sampling, prompt_version=None, max_document_chars: int = 6000):
        self.max_document_chars = max_document_chars
        super().__init__(sampling, prompt_version)

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
