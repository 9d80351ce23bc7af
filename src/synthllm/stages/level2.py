"""Level-2 questions (SPEC §1): a document plus its key concepts, 2-3 concepts combined per question."""

from __future__ import annotations

from ..io import truncate_text
from .base import QuestionStage, Record
from .parsing import parse_questions
from .records import format_topics, question_record


class Level2Questions(QuestionStage):
    """Concept record joined with its document text (``record["text"]``) in; question records out.

    Each question keeps the concepts the model says it combined
    (``concepts``); when the model names none, all the document's concepts
    are kept as context instead (``concepts_selected`` is then False).
    """

    name = "level2"
    template_name = "level2"

    def record_concepts(self, record: Record) -> list[str]:
        return [c for t in record["topics"] for c in t["concepts"]]

    def build(self, record: Record) -> list[dict]:
        return self.template.render(document=truncate_text(record["text"], self.max_source_chars),
                                    concepts=format_topics(record["topics"]), max_questions=self.max_questions)

    def parse(self, record: Record, texts: list[str]) -> list[Record]:
        questions = parse_questions(texts[0], self.max_questions, with_concepts=True)
        all_concepts = [c for t in record["topics"] for c in t["concepts"]]
        return [
            question_record(2, q["question"], i, [record["doc_id"]], parent_id=record["id"],
                            concepts=q["selected_concepts"] or all_concepts,
                            concepts_selected=bool(q["selected_concepts"]))
            for i, q in enumerate(questions[: self.max_questions])
        ]
