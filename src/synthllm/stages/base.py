"""What a model stage is: build a prompt from a record, parse the reply.

A model stage (Curator's two-method shape) is a small class with

- ``build(record) -> messages``: the chat messages for one input record;
- ``parse(record, texts) -> list of output records``: turn the model's reply
  (``n_samples`` replies for self-consistency stages) into records.

``parse`` raises :class:`Unsuitable` when the model says the input is not
suitable (a legitimate outcome, counted) and :class:`Unparsable` when the
reply cannot be read; the executor keeps the raw text and the reason in the
stage's rejects and counts them, so nothing is silently dropped. The stage
never sees a backend, a cache or a shard: the executor owns those.

Each stage also declares the shape of its reply as a grammar
(``stage.grammar``, a :class:`synthllm.prompts.Grammar` rendered from
``prompts/<template_name>.v<k>.ebnf``), which travels on every request
(``ChatRequest.grammar``) so that backends able to constrain decoding do so.
Why: SmolLM2-135M unconstrained gave 0/32 well-formed Level-1 replies and 1/20
parsable concept lists in the demo; under an EBNF grammar of the same format,
32/32 (issue #14). The tolerant parsers stay, for servers that cannot
constrain.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import ClassVar

from ..llm.base import ChatRequest, Sampling
from ..records import Record


class Unsuitable(Exception):
    """The model declined the input (e.g. Level-1's 'not suitable' sentinel)."""


class Unparsable(Exception):
    """The reply could not be parsed; the message says why."""


class ModelStage(ABC):
    """Base class for stages that call the model once (or ``n_samples`` times) per record."""

    #: stage name: the run folder's sub-folder and the manifest key
    name: ClassVar[str]
    #: prompt template name in ``synthllm/prompts`` (``<name>.v<k>.txt``)
    template_name: ClassVar[str]
    #: how many replies ``parse`` receives per record
    n_samples: int = 1
    #: the output field that records the template version (a stage that adds to
    #: another stage's records, like answers, uses its own field)
    version_field: ClassVar[str] = "prompt_version"

    def __init__(self, sampling: Sampling, prompt_version: str | None = None, grammar_version: str | None = None):
        from ..prompts import load_template

        self.template = load_template(self.template_name, prompt_version)
        self.sampling = replace(sampling, stop=self.stop_sequences()) if self.stop_sequences() else sampling
        #: the reply's grammar (:class:`synthllm.prompts.Grammar`), or None for a stage without one;
        #: its ``sha256`` belongs in the step fingerprint, its ``version`` in the manifest
        self.grammar = self.build_grammar(grammar_version)

    def build_grammar(self, version: str | None = None):
        """The stage's reply grammar (``prompts/<template_name>.v<k>.ebnf``), or None if it has none."""
        from ..prompts import available_versions, load_grammar

        if not available_versions(self.template_name, "ebnf"):
            return None
        return load_grammar(self.template_name, version, **self.grammar_fields())

    def grammar_fields(self) -> dict:
        """Values for the grammar file's placeholders."""
        return {}

    def grammar_text(self, record: Record) -> str | None:
        """The grammar sent with this record's requests (the stage's own, unless a stage narrows it)."""
        return self.grammar.text if self.grammar is not None else None

    def requests(self, record: Record) -> list[ChatRequest]:
        """The ``n_samples`` requests for one input record (messages, sampling, prefill, grammar)."""
        messages = self.build(record)
        grammar = self.grammar_text(record)
        return [ChatRequest.from_messages(messages, self.sampling, sample_index, self.prefill, grammar=grammar)
                for sample_index in range(self.n_samples)]

    def stop_sequences(self) -> tuple[str, ...]:
        """Strings that end a reply early (after the last block the prompt asks for)."""
        return ()

    #: how the reply must begin; backends that can, start the reply with it (see ChatRequest.prefill)
    prefill: ClassVar[str] = ""

    #: bump when ``parse`` turns the same reply into different records (it enters the step's fingerprint)
    parser_version: ClassVar[int] = 1

    @property
    def prompt_version(self) -> str:
        return self.template.version

    def fingerprint_parts(self) -> list:
        """Everything that decides this stage's requests and records besides its input: the step
        fingerprint holds it, so editing a template in place, the parser or the request shape redoes
        the step (the version name alone would not)."""
        template = self.template
        text = json.dumps([template.system, template.user, template.example], ensure_ascii=False)
        return [self.name, template.version, hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
                type(self).__name__, self.parser_version, self.prefill, self.sampling.as_dict(), self.n_samples,
                self.grammar.sha256 if self.grammar is not None else None]

    def record_id(self, record: Record) -> str:
        """The id that names an input record in rejects and lineage."""
        return str(record["id"])

    @abstractmethod
    def build(self, record: Record) -> list[dict]:
        """Chat messages for one input record."""

    @abstractmethod
    def parse(self, record: Record, texts: list[str]) -> list[Record]:
        """Output records for one input record; raise Unsuitable or Unparsable."""


class QuestionStage(ModelStage):
    """A question generator: asks for at most ``max_questions`` ``<Qn>`` blocks and stops after the last.

    Parameters
    ----------
    sampling : sampling parameters of the call.
    prompt_version : pin a template version (default: newest).
    max_questions : most questions asked for (and kept) per input record.
    min_questions : fewest questions the reply grammar lets a reply hold (SPEC: 1).
    max_source_chars : source text (document or each reference) is cut to this length in the prompt.
    """

    # Every format starts its first block this way (fields may come in any order after it);
    # opening a "Selected Concepts: [" list instead lets small models loop inside it.
    prefill = "<Q1>\nQuestion:"

    def __init__(self, sampling: Sampling, prompt_version: str | None = None, max_questions: int = 5,
                 max_source_chars: int = 6000, grammar_version: str | None = None, min_questions: int = 1):
        if not 1 <= min_questions <= max_questions:
            raise ValueError(f"need 1 <= min_questions <= max_questions, got {min_questions} and {max_questions}")
        self.max_questions, self.min_questions = max_questions, min_questions
        self.max_source_chars = max_source_chars
        super().__init__(sampling, prompt_version, grammar_version)

    def stop_sequences(self) -> tuple[str, ...]:
        return (f"</Q{self.max_questions}>",)

    def record_concepts(self, record: Record) -> list[str]:
        """The concepts a reply may select (Level-2: the document's, Level-3: the walk's); none here."""
        return []

    def grammar_text(self, record: Record) -> str | None:
        """The stage's grammar with ``concept ::= concept-free`` narrowed to this record's concepts.

        Grammars from v2 of Level-2 and Level-3 hold that rule; a reply then selects only concepts
        the prompt listed. Names with a comma, a bracket, a newline or ``<`` cannot sit in the
        comma-separated list and are left out; with fewer than 2 names left the free rule stays.
        """
        text = super().grammar_text(record)
        if text is None or "\nconcept ::= concept-free\n" not in text:
            return text
        names = sorted({c.strip() for c in self.record_concepts(record)
                        if c.strip() and not any(ch in c for ch in ",[]<\n\t")})
        if len(names) < 2:
            return text
        choices = " | ".join(_ebnf_literal(name) for name in names)
        return text.replace("\nconcept ::= concept-free\n", f"\nconcept ::= {choices}\n")

    def grammar_fields(self) -> dict:
        from ..prompts import numbered_blocks

        blocks, rules = numbered_blocks(self.max_questions, "block-body", minimum=self.min_questions)
        return {"max_questions": self.max_questions, "blocks": blocks, "block_rules": rules}


def _ebnf_literal(text: str) -> str:
    """``text`` as an EBNF string literal (xgrammar and GBNF escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
