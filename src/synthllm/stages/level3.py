"""Level-3 questions (SPEC §1): a concept combination from a graph walk, grounded in two reference documents."""

from __future__ import annotations

from ..io import truncate_text
from .base import QuestionStage, Record
from .parsing import parse_questions
from .records import format_topics, question_record


class Level3Questions(QuestionStage):
    """Combination record in; question records out.

    The input record (made by the pipeline after the walk step) holds ``id``,
    ``walk`` (the walk as a dict), ``groups`` (the walk's key concepts grouped
    under its topics) and ``references`` (``[{"doc_id", "score", "text"}]``,
    top-k by Jaccard similarity).
    """

    name = "level3"
    template_name = "level3"

    def record_concepts(self, record: Record) -> list[str]:
        return [c for g in record["groups"] for c in g["concepts"]]

    def build(self, record: Record) -> list[dict]:
        refs = [truncate_text(r["text"], self.max_source_chars) for r in record["references"]]
        refs += ["(none)"] * (2 - len(refs))
        return self.template.render(concepts=format_topics(record["groups"]), reference_1=refs[0],
                                    reference_2=refs[1], max_questions=self.max_questions)

    def parse(self, record: Record, texts: list[str]) -> list[Record]:
        questions = parse_questions(texts[0], self.max_questions, with_concepts=True)
        walk_concepts = [c for g in record["groups"] for c in g["concepts"]]
        sources = [r["doc_id"] for r in record["references"]]
        return [
            question_record(3, q["question"], i, sources, parent_id=record["id"],
                            concepts=q["selected_concepts"] or walk_concepts,
                            concepts_selected=bool(q["selected_concepts"]), walk=record["walk"])
            for i, q in enumerate(questions[: self.max_questions])
        ]
