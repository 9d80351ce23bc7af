"""Reply grammars: every stage declares one, it accepts the formats the parsers read and refuses loops."""

import dataclasses

import pytest

from synthllm.llm.base import ChatRequest, Sampling
from synthllm.prompts import load_grammar, numbered_blocks
from synthllm.stages.answers import AnswerQuestions
from synthllm.stages.concepts import ExtractConcepts
from synthllm.stages.level1 import Level1Questions
from synthllm.stages.level2 import Level2Questions
from synthllm.stages.level3 import Level3Questions
from synthllm.stages.parsing import extract_final_answer, parse_concepts, parse_questions
from synthllm.stages.rate import RateDocuments, parse_rating

xgr = pytest.importorskip("xgrammar")
from xgrammar.testing import _is_grammar_accept_string  # noqa: E402

S = Sampling(max_tokens=256)


def accepts(stage_or_text, text: str) -> bool:
    grammar = stage_or_text if isinstance(stage_or_text, str) else stage_or_text.grammar.text
    return _is_grammar_accept_string(xgr.Grammar.from_ebnf(grammar), text)


def accepts_prefix(grammar: str, prefix: str) -> bool:
    """Whether some reply the grammar accepts starts with ``prefix``."""
    return _is_grammar_accept_string(xgr.Grammar.from_ebnf(grammar), prefix, require_termination=False)


LEVEL1 = ("<Q1>\nQuestion: A line passes through $(1, 2)$ and $(3, 8)$. What is its slope?\n"
          "Orig_tag:<newly_created>\nLevel:<high_school>\n</Q1>\n"
          "<Q2>\nQuestion: Round $3{,}487$ to the nearest hundred.\nOrig_tag:<original_question>\n"
          "Level:<elementary>\n</Q2>")
LEVEL2 = ("<Q1>\nSelected Concepts: [Slope, Rounding]\nQuestion: A ramp rises 37 cm over 212 cm. "
          "What is its slope, rounded to the nearest tenth?\n</Q1>")
CONCEPTS = ("<level>high school</level>\n<subject>Algebra</subject>\n<topic>\n1. Linear equations\n</topic>\n"
            "<key_concept>\n1. Linear equations\n1.1. Slope\n1.2. Intercept\n1.3. Solution set\n"
            "1.4. Equivalent equations\n1.5. Isolating the variable\n</key_concept>")


def test_every_model_stage_declares_a_grammar_that_xgrammar_reads():
    stages = [ExtractConcepts(S), Level1Questions(S, max_questions=3), Level2Questions(S, max_questions=3),
              Level3Questions(S, max_questions=2), AnswerQuestions(S), RateDocuments(S)]
    for stage in stages:
        assert stage.grammar is not None and stage.grammar.version == (
            "v2" if stage.name in ("concepts", "level2", "level3") else "v1")
        assert "#" not in stage.grammar.text.split("::=")[0]  # comments are not sent
        xgr.Grammar.from_ebnf(stage.grammar.text)  # raises on a syntax error
        request = stage.requests({"id": "d", "text": "x " * 50, "doc_id": "d", "topics": [], "question": "q?",
                                  "groups": [], "references": [], "walk": {}})[0]
        assert request.grammar == stage.grammar.text


def test_level1_grammar_accepts_the_papers_format_and_the_parser_reads_it():
    stage = Level1Questions(S, max_questions=3)
    assert accepts(stage, LEVEL1)
    assert [q["difficulty"] for q in parse_questions(LEVEL1, 3)] == ["high_school", "elementary"]
    assert accepts(stage, "NOT_SUITABLE_FOR_QUESTIONS")
    assert not accepts(Level1Questions(S, max_questions=3, allow_unsuitable=False), "NOT_SUITABLE_FOR_QUESTIONS")
    # refused: more blocks than asked, free whitespace, a too short or overlong (looping) question
    four = "\n".join(LEVEL1.replace("Q1", f"Q{n}").split("\n<Q2>")[0] for n in (1, 2, 3, 4))
    assert accepts(stage, "\n".join(four.split("\n<Q4>")[0:1])) and not accepts(stage, four)
    assert not accepts(stage, LEVEL1.replace("<Q1>\n", "<Q1>\n\n"))
    assert not accepts(stage, LEVEL1.replace("What is its slope?", "Slope?").replace(
        "A line passes through $(1, 2)$ and $(3, 8)$. ", ""))
    assert not accepts(stage, LEVEL1.replace("What is its slope?", "What is its slope? " * 20))
    assert not accepts(Level1Questions(S, max_questions=1), LEVEL1)  # N follows max_questions


def test_level2_and_level3_grammars_bound_the_selected_concepts():
    for stage in (Level2Questions(S, max_questions=2), Level3Questions(S, max_questions=2)):
        assert accepts(stage, LEVEL2)
        assert parse_questions(LEVEL2, 2, with_concepts=True)[0]["selected_concepts"] == ["Slope", "Rounding"]
        assert not accepts(stage, LEVEL2.replace("[Slope, Rounding]", "[Slope]"))
        assert not accepts(stage, LEVEL2.replace("[Slope, Rounding]", "[Slope, Rounding, Ramps, Tenths]"))


def test_concept_grammar_bounds_topics_and_concepts():
    spec = ExtractConcepts(S)  # SPEC: 1-5 topics, 5-20 concepts per topic
    assert accepts(spec, CONCEPTS)
    assert parse_concepts(CONCEPTS)["topics"][0]["concepts"][0] == "Slope"
    four = CONCEPTS.replace("1.5. Isolating the variable\n", "")
    assert not accepts(spec, four)  # 4 concepts: fewer than 5
    many = CONCEPTS.replace("</key_concept>", "".join(f"1.{n}. Concept {n}\n" for n in range(6, 22)) + "</key_concept>")
    assert not accepts(spec, many)  # 21 concepts
    assert accepts(spec, many.replace("1.21. Concept 21\n", ""))  # 20
    # the <topic> list and the <key_concept> section must hold the same number of topics
    assert not accepts(spec, CONCEPTS.replace("1. Linear equations\n</topic>", "1. Linear equations\n2. Slopes\n</topic>"))
    small = ExtractConcepts(S, topics=(1, 2), concepts=(2, 3))
    assert not accepts(small, CONCEPTS) and small.grammar.text != spec.grammar.text
    with pytest.raises(ValueError):
        ExtractConcepts(S, topics=(0, 2))


def test_concept_names_start_with_a_letter_so_numbering_loops_are_refused():
    """Demo replies v1 allowed (SmolLM2-135M, 20 documents): names made of numbering or of junk."""
    stage = ExtractConcepts(S)
    loops = ["<level>elementary</level>\n<subject>1. 1.1.1.1.1.1</subject>\n",
             "<level>elementary</level>\n<subject>algebra</subject>\n<topic>\n1. 1.1.1: 1.1.1.1: 1.1.1.1:\n",
             # where refusing a leading digit alone moved them (SmolLM2, demo, 4 of 20 replies)
             "<level>elementary</level>\n<subject>\u05e2\u05d5\u05d1\u05e8</subject>\n",
             "<level>college</level>\n<subject>Algebra</subject>\n<topic>\n1. \ufeff1. 1. 1.",
             "<level>college</level>\n<subject>Algebra</subject>\n<topic>\n1. \u24d0 1. 1. 1."]
    v1 = load_grammar("concepts", "v1", **stage.grammar_fields()).text
    for prefix in loops:
        assert accepts_prefix(v1, prefix) and not accepts_prefix(stage.grammar.text, prefix)
    assert accepts(stage, CONCEPTS.replace("Algebra", "Álgebra").replace("Slope", "x-intercept of a line"))


def test_answer_and_rating_grammars_end_with_what_the_parsers_read():
    answer = AnswerQuestions(Sampling(max_tokens=128))
    text = "Slope is rise over run.\n(8 - 2) / (3 - 1) = 3.\nFinal answer: \\boxed{3}"
    assert accepts(answer, text) and extract_final_answer(text) == "3"
    assert not accepts(answer, "Slope is rise over run.")  # no final answer
    assert not accepts(answer, "step\n" * 3 + "Final answer: \\boxed{3}")  # 128 tokens allow 2 lines
    rate = RateDocuments(S)
    assert accepts(rate, "Clear and relevant.\nRating: 8") and parse_rating("Clear and relevant.\nRating: 8") == 8
    assert not accepts(rate, "Rating: 11")


def test_numbered_blocks_and_placeholders():
    expression, rules = numbered_blocks(2, "body")
    assert expression == 'q1 ("\\n" q2)?' and rules.count("::=") == 2
    with pytest.raises(KeyError):
        load_grammar("level1")  # its placeholders are not filled


def test_the_grammar_is_part_of_the_cache_key_and_only_when_set():
    request = ChatRequest.from_messages([{"role": "user", "content": "hi"}], S)
    constrained = dataclasses.replace(request, grammar='root ::= "a"')
    other = dataclasses.replace(request, grammar='root ::= "b"')
    keys = {request.cache_key("m"), constrained.cache_key("m"), other.cache_key("m")}
    assert len(keys) == 3
    # an unconstrained request keeps the key it had before grammars existed (old caches stay valid)
    # (the key computed by the code before this change)
    assert request.cache_key("m") == "678cc0edd485f7262403cd77e4adcf3a64021199d88670e891bdd4176b498f85"


def test_a_minimum_number_of_questions_is_held_by_the_grammar():
    one = LEVEL1.split("\n<Q2>")[0]
    assert accepts(Level1Questions(S, max_questions=3), one)
    at_least_two = Level1Questions(S, max_questions=3, min_questions=2, allow_unsuitable=False)
    assert not accepts(at_least_two, one) and accepts(at_least_two, LEVEL1)
    assert not accepts(Level2Questions(S, max_questions=3, min_questions=2), LEVEL2)
    with pytest.raises(ValueError):
        Level1Questions(S, max_questions=2, min_questions=3)


def test_level2_and_level3_replies_select_only_the_prompts_concepts():
    """v1 let SmolLM2-135M 'select' concepts such as ':28:44.22:28:44' and ask '1.1. 1.2. 1.3.' (demo)."""
    topics = [{"topic": "Slopes", "concepts": ["Slope", "Rounding", 'The "rise"', "a, b pairs"]}]
    stage = Level2Questions(S, max_questions=3)
    grammar = stage.requests({"id": "d", "doc_id": "d", "text": "x", "topics": topics})[0].grammar
    assert grammar != stage.grammar.text and '"The \\"rise\\""' in grammar and "a, b pairs" not in grammar
    assert accepts(grammar, LEVEL2)
    assert not accepts(grammar, LEVEL2.replace("Rounding", "Intercept"))  # not in the prompt's list
    assert accepts(grammar, LEVEL2.replace("Rounding", 'The "rise"'))
    assert not accepts(grammar, LEVEL2.replace("Question: A ramp", "Question: 1.1. 1.2. A ramp"))
    assert accepts(stage, LEVEL2.replace("Rounding", "Intercept"))  # the stage's own grammar: any name
    level3 = Level3Questions(S, max_questions=2)
    walk = {"id": "w", "groups": [{"topic": "A", "concepts": ["Slope"]}, {"topic": "B", "concepts": ["Rounding"]}],
            "references": [], "walk": {}}
    narrowed = level3.requests(walk)[0].grammar
    assert accepts(narrowed, LEVEL2) and not accepts(narrowed, LEVEL2.replace("Slope", "Area"))
    alone = dict(walk, groups=[{"topic": "A", "concepts": ["Slope"]}])  # fewer than 2 names: the free rule
    assert level3.requests(alone)[0].grammar == level3.grammar.text
