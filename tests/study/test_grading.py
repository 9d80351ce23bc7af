"""math-verify grading on real GSM8K and MATH reference answers (known-equal and known-different pairs)."""

import json

import pytest

pytest.importorskip("math_verify")

from synthllm.study.data import gsm8k_final
from synthllm.study.grading import answer_part, is_correct


def _rows(path, n):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def test_every_gsm8k_solution_matches_its_own_final_answer_and_not_a_different_one(shared_data):
    rows = _rows(shared_data / "gsm8k" / "test.jsonl", 60)
    finals = [gsm8k_final(row["answer"]) for row in rows]
    assert all(is_correct(row["answer"], final) for row, final in zip(rows, finals))
    different = [(row["answer"], other) for row, other in zip(rows, finals[1:] + finals[:1])
                 if float(gsm8k_final(row["answer"])) != float(other)]
    assert len(different) > 50
    assert not any(is_correct(answer, other) for answer, other in different)


def test_math500_boxed_solutions_match_their_answer_field_and_not_a_different_integer(shared_data):
    rows = _rows(shared_data / "math" / "math500_test.jsonl", 80)
    assert sum(is_correct(row["solution"], row["answer"]) for row in rows) >= 78  # LaTeX oddities may cost a couple
    integers = [row for row in rows if row["answer"].strip().lstrip("-").isdigit()]
    assert len(integers) > 20
    pairs = [(a["solution"], b["answer"]) for a, b in zip(integers, integers[1:] + integers[:1])
             if int(a["answer"]) != int(b["answer"])]
    assert pairs and not any(is_correct(solution, answer) for solution, answer in pairs)


def test_math_test_solution_graded_against_itself_through_boxed(shared_data):
    rows = _rows(shared_data / "math" / "test.jsonl", 30)
    assert sum(is_correct(row["solution"], row["solution"]) for row in rows) >= 28


def test_equivalent_forms_and_failures():
    assert is_correct("So the answer is 0.5", "\\frac{1}{2}")
    assert is_correct("The answer is \\boxed{\\frac{14}{3}}.", "\\frac{14}{3}")
    assert is_correct("16 - 3 - 4 = 9 eggs, 9 * 2 = 18\n#### 18", "18")
    assert is_correct("#### 1,000", "1000")
    assert not is_correct("#### 17", "18")
    assert not is_correct(None, "18")
    assert not is_correct("", "18")
    assert answer_part("work #### 42") == "42"
