"""The parsers on real replies of the embedded SmolLM2-135M-Instruct model.

`fixtures/model_outputs.jsonl` holds replies captured from a demo run (with
the prefill each stage gives the embedded backend), each with what parsing it
must give: a number of questions or topics, a first question, or the reason it
cannot be parsed.
"""

import json
from pathlib import Path

import pytest

from synthllm.stages.base import Unparsable
from synthllm.stages.parsing import extract_final_answer, parse_concepts, parse_questions

FIXTURES = [json.loads(line) for line in
            (Path(__file__).parent / "fixtures" / "model_outputs.jsonl").read_text().splitlines() if line.strip()]


def parse(fixture):
    raw, stage = fixture["raw"], fixture["stage"]
    if stage == "concepts":
        parsed = parse_concepts(raw)
        return {"topics": len(parsed["topics"]), "concepts": sum(len(t["concepts"]) for t in parsed["topics"]),
                "first_topic": parsed["topics"][0]["topic"]}
    if stage == "answers":
        return {"final_answer": extract_final_answer(raw)}
    questions = parse_questions(raw, 5, with_concepts=stage != "level1")
    return {"questions": len(questions), "first_question": questions[0]["question"]}


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f"{f['stage']}-{i}" for i, f in enumerate(FIXTURES)])
def test_real_reply(fixture):
    expect = fixture["expect"]
    if "unparsable" in expect:
        with pytest.raises(Unparsable, match=expect["unparsable"]):
            parse(fixture)
    else:
        assert parse(fixture) == expect


def test_the_fixtures_cover_every_stage_and_both_outcomes():
    stages = {f["stage"] for f in FIXTURES}
    assert stages == {"concepts", "level1", "level2", "level3", "answers"}
    assert any("unparsable" in f["expect"] for f in FIXTURES)
