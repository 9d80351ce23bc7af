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

    def __init__(self, sampling, prompt_version=None, max_questions: int = 5, max_source_chars: int = 6000,
                 grammar_version: str | None = None, allow_unsuitable: bool = True, min_questions: int = 1):
        self.allow_unsuitable = allow_unsuitable
        super().__init__(sampling, prompt_version, max_questions, max_source_chars, grammar_version, min_questions)

    def grammar_fields(self) -> dict:
        # Under its grammar SmolLM2-135M chose the sentinel for 9 of 20 OpenStax sections (v5
        # prompt): a small model may be better held to writing questions (allow_unsuitable=False).
        choice = f' | "{NOT_SUITABLE}"' if self.allow_unsuitable else ""
        return {**super().grammar_fields(), "sentinel_choice": choice}

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
