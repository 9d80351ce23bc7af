"""Level-1 questions (SPEC §1): direct extraction from one document."""

from __future__ import annotations

from ..io import truncate_text
from .base import QuestionStage, Record, Unsuitable
from .parsing import parse_questions
from .records import question_record

NOT_SUITABLE = "NOT_SUITABLE_FOR_QUESTIONS"


class Level1Questions(QuestionStage):
    """Document in; 1-``max_questions`` question records out.

    A reply that is the sentinel ``NOT_SUITABLE_FOR_QUESTIONS`` (and holds no
    question) marks the document unsuitable.
    """

    name = "level1"
    template_name = "level1"

    def grammar_fields(self) -> dict:
        return {**super().grammar_fields(), "sentinel": NOT_SUITABLE}

    def build(self, record: Record) -> list[dict]:
        return self.template.render(document=truncate_text(record["text"], self.max_source_chars),
                                    max_questions=self.max_questions, sentinel=NOT_SUITABLE)

    def parse(self, record: Record, texts: list[str]) -> list[Record]:
        text = texts[0]
        try:
            questions = parse_questions(text, self.max_questions, sentinel=NOT_SUITABLE)
        except Exception:
            if NOT_SUITABLE in text.upper().replace(" ", "_"):
                raise Unsuitable("the model marked the document not suitable for questions") from None
            raise
        return [
            question_record(1, q["question"], i, [record["id"]], parent_id=record["id"],
                            orig_tag=q["orig_tag"], difficulty=q["difficulty"])
            for i, q in enumerate(questions[: self.max_questions])
        ]
