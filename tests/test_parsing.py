"""Parsers against the shapes models really produce (synthetic variants here; real outputs in test_fixtures)."""

import pytest

from synthllm.stages.base import Unparsable
from synthllm.stages.parsing import (extract_final_answer, majority_answer, normalise_level, parse_concept_list,
                                     parse_concepts, parse_questions, split_question_blocks)

WELL_FORMED = """<Q1>
Question: Solve $2x + 3 = 11$.
Orig_tag:<original_question>
Level:<middle_school>
</Q1>
<Q2>
Question: What is the slope of the line through $(1, 2)$ and $(3, 8)$?
Orig_tag:<newly_created>
Level:<high_school>
</Q2>"""


def test_well_formed_level1():
    qs = parse_questions(WELL_FORMED, 5)
    assert [q["question"][:8] for q in qs] == ["Solve $2", "What is "]
    assert qs[0]["orig_tag"] == "original_question" and qs[1]["orig_tag"] == "newly_created"
    assert [q["difficulty"] for q in qs] == ["middle_school", "high_school"]


@pytest.mark.parametrize("text", [
    # closing tags missing
    "<Q1>\nQuestion: Solve $2x + 3 = 11$ for x.\nLevel: middle school\n<Q2>\nQuestion: Find the slope of y = 3x + 1.",
    # prose around, bold tags
    "Sure! Here are the questions.\n**<Q1>**\nQuestion: Solve $2x + 3 = 11$ for x.\n**<Q2>**\nQuestion: Find the slope of y = 3x + 1.\nHope this helps!",
    # no tags, numbered list
    "1. Solve $2x + 3 = 11$ for x.\n2) Find the slope of y = 3x + 1.",
    # no tags, 'Question n:' labels
    "Question 1: Solve $2x + 3 = 11$ for x.\nQuestion 2: Find the slope of y = 3x + 1.",
    # Q1: numbering with lowercase labels
    "Q1: Solve $2x + 3 = 11$ for x.\nQ2: Find the slope of y = 3x + 1.",
])
def test_tolerated_variants(text):
    qs = parse_questions(text, 5)
    assert len(qs) == 2
    assert qs[0]["question"].startswith("Solve $2x + 3 = 11$")
    assert qs[1]["question"].startswith("Find the slope")


def test_max_questions_and_sentinel_and_empty():
    many = "\n".join(f"<Q{i}>\nQuestion: Question number {i} about fractions?\n</Q{i}>" for i in range(1, 8))
    assert len(parse_questions(many, 5)) == 7  # the caller keeps the first max_questions
    with pytest.raises(Unparsable, match="no question"):
        parse_questions("NOT_SUITABLE_FOR_QUESTIONS", 5, sentinel="NOT_SUITABLE_FOR_QUESTIONS")
    with pytest.raises(Unparsable, match="empty reply"):
        parse_questions("   ", 5)


def test_selected_concepts_variants():
    text = ("<Q1>\nSelected Concepts: [slope, y-intercept]\nQuestion: A line has slope 2 and passes (0, 3); find it.\n</Q1>\n"
            "<Q2>\nSelected concepts: ratio and percent\nQuestion: Express the ratio 3:4 as a percent.\n")
    qs = parse_questions(text, 5, with_concepts=True)
    assert qs[0]["selected_concepts"] == ["slope", "y-intercept"]
    assert qs[1]["selected_concepts"] == ["ratio", "percent"]
    assert parse_concept_list('["a", "b"]') == ["a", "b"]


CONCEPTS = """<level>college</level>
<subject>Algebra</subject>
<topic>
1. Quadratic equations
2. Complex numbers
</topic>
<key_concept>
1. Quadratic equations
1.1. Discriminant
1.2. Quadratic formula
1.3. **Completing the square**
2. Complex numbers
2.1. Imaginary unit
2.2. Complex conjugate
</key_concept>"""


def test_concepts_well_formed():
    parsed = parse_concepts(CONCEPTS)
    assert parsed["level"] == "college" and parsed["subject"] == "Algebra"
    assert parsed["topics"] == [
        {"topic": "Quadratic equations", "concepts": ["Discriminant", "Quadratic formula", "Completing the square"]},
        {"topic": "Complex numbers", "concepts": ["Imaginary unit", "Complex conjugate"]},
    ]


def test_concepts_missing_closing_tags_bullets_and_no_topic_section():
    text = ("<level>High School\n<subject>Geometry\n<key_concept>\n1. Triangles\n- Pythagorean theorem\n"
            "- Hypotenuse\n2. Circles\n- Circumference\n- Radius")
    parsed = parse_concepts(text)
    assert parsed["level"] == "high_school" and parsed["subject"] == "Geometry"
    assert parsed["topics"][0] == {"topic": "Triangles", "concepts": ["Pythagorean theorem", "Hypotenuse"]}
    assert parsed["topics"][1]["concepts"] == ["Circumference", "Radius"]


def test_concepts_caps_and_failure():
    lines = ["<key_concept>"]
    for t in range(1, 8):
        lines.append(f"{t}. Topic {t}")
        lines += [f"{t}.{k}. concept {t}-{k}" for k in range(1, 26)]
    parsed = parse_concepts("\n".join(lines))
    assert len(parsed["topics"]) == 5 and all(len(t["concepts"]) == 20 for t in parsed["topics"])
    with pytest.raises(Unparsable):
        parse_concepts("The document is about numbers.")


def test_final_answers_and_majority():
    assert extract_final_answer("so x = 2. Final answer: \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_final_answer("Final answer: $42$.") == "42"
    assert extract_final_answer("no answer here") is None
    assert extract_final_answer("\\boxed{3 + {4") == "3 + {4"
    best, agreement = majority_answer(["\\text{5}", "7", "5 ", None])
    assert best == 0 and agreement == 0.5
    assert majority_answer([None, None]) == (0, 0.0)


def test_level_normalisation():
    assert normalise_level("<grad_school>") == "grad_school"
    assert normalise_level("Graduate") == "grad_school"
    assert normalise_level("Middle School") == "middle_school"
    assert normalise_level("unknown") is None
    assert split_question_blocks("") == []


def test_repeated_topics_are_merged():
    text = ("<key_concept>\n1. Linear equation\n1.1. Slope\n1.2. Intercept\n2. Linear equation\n2.1. Slope\n"
            "2.2. Solution set\n3. Graphs\n3.1. Axis\n")
    parsed = parse_concepts(text)
    assert parsed["topics"] == [{"topic": "Linear equation", "concepts": ["Slope", "Intercept", "Solution set"]},
                                {"topic": "Graphs", "concepts": ["Axis"]}]


def test_templates_with_a_worked_example_render_a_prior_exchange():
    from synthllm.prompts import load_template

    messages = load_template("concepts", "v3").render(document="Fractions are parts of a whole.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "<key_concept>" in messages[2]["content"] and "Fractions are parts" in messages[3]["content"]
    assert "{{" not in "".join(m["content"] for m in messages)


def test_newest_templates_show_no_content_the_model_could_copy():
    from synthllm.prompts import load_template

    for name in ("concepts", "level1", "level2", "level3"):
        template = load_template(name)
        assert template.version == ("v5" if name == "concepts" else "v6") and template.example is None
        messages = template.render(document="DOC", max_questions=3, sentinel="NONE", concepts="C",
                                   reference_1="R", reference_2="R")
        text = " ".join(m["content"] for m in messages)
        if name != "concepts":  # v6: the source text comes last, right before the reply (grounding 0.61 -> 0.92)
            assert messages[-1]["content"].rstrip().endswith("DOC" if name != "level3" else "R")
        # v3's worked example (a jacket on sale) was copied into 11 of 17 demo questions, v4's
        # capitalised placeholders ('QUESTION ABOUT THE DOCUMENT') into most replies
        assert "jacket" not in text and "QUESTION ABOUT" not in text and "FIRST KEY CONCEPT" not in text


def test_questions_are_trimmed_of_appended_answers_and_loops():
    from synthllm.stages.parsing import trim_question

    looping = "A jacket costs $10. How much is it after 50% off?\n\nThe answer is $5.\n\nThe answer is $5."
    assert trim_question(looping) == "A jacket costs $10. How much is it after 50% off?"
    setup = "A train leaves at noon.\n\nIt travels at 60 km/h for 2 hours. How far does it go?\n\nSolution: 120 km"
    assert trim_question(setup) == "A train leaves at noon.\n\nIt travels at 60 km/h for 2 hours. How far does it go?"
    assert trim_question("Solve $x + 1 = 2$.\n\nSolve $x + 1 = 2$.") == "Solve $x + 1 = 2$."
