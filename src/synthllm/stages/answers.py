"""Answer generation (SPEC §1 stage 3), with optional self-consistency."""

from __future__ import annotations

from .base import ModelStage, Record, Unparsable
from .parsing import extract_final_answer, majority_answer


class AnswerQuestions(ModelStage):
    """Question record in; the same record with ``answer``, ``final_answer`` and ``agreement`` out.

    With ``samples > 1`` the reply whose final answer is the most common is
    kept (self-consistency) and ``agreement`` is the share of samples that
    agree with it; with one sample ``agreement`` is None.
    """

    name = "answers"
    template_name = "answer"
    version_field = "answer_prompt_version"

    def __init__(self, sampling, prompt_version=None, samples: int = 1, grammar_version: str | None = None):
        self.n_samples = samples
        super().__init__(sampling, prompt_version, grammar_version)

    def grammar_fields(self) -> dict:
        # about 50 tokens per line of at most 200 characters, and ~24 for the final line
        return {"max_steps": max(1, (self.sampling.max_tokens - 24) // 50)}

    def build(self, record: Record) -> list[dict]:
        return self.template.render(question=record["question"])

    def parse(self, record: Record, texts: list[str]) -> list[Record]:
        texts = [t.strip() for t in texts]
        if not any(texts):
            raise Unparsable("empty answer")
        finals = [extract_final_answer(t) for t in texts]
        if self.n_samples > 1:
            best, agreement = majority_answer(finals)
        else:
            best, agreement = 0, None
        if not texts[best]:
            best = next(i for i, t in enumerate(texts) if t)
        return [{**record, "answer": texts[best], "final_answer": finals[best], "agreement": agreement}]
