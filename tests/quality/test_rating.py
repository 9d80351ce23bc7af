"""The rate stage builds its prompt and reads ratings from varied model replies."""

from __future__ import annotations

import pytest

from synthllm.llm.base import Sampling
from synthllm.stages.base import Unparsable
from synthllm.stages.rate import RateDocuments, parse_rating


@pytest.mark.parametrize("reply, rating", [
    ("Rating: 7", 7.0),
    ("The document is a clear algebra lesson.\nRating: 8", 8.0),
    ("7/10", 7.0),
    ("I would give it 8 out of 10.", 8.0),
    ("**8**", 8.0),
    ("**Rating:** 9", 9.0),
    ("Rating: **6**", 6.0),
    ("Score = 6.5", 6.5),
    ("9", 9.0),
    ("Relevance is judged on a 1 to 10 scale; clarity is good.\nRating: 4", 4.0),
    ("rating of 3 for clarity, but overall\nRating: 5/10", 5.0),
])
def test_parse_rating_accepts_common_formats(reply, rating):
    assert parse_rating(reply) == rating


@pytest.mark.parametrize("reply, reason", [
    ("I cannot judge this document.", "no rating"),
    ("Rating: 15", "outside 1-10"),
    ("Rating: 0", "outside 1-10"),
    ("", "no rating"),
])
def test_parse_rating_rejects_with_reason(reply, reason):
    with pytest.raises(Unparsable, match=reason):
        parse_rating(reply)


def test_stage_builds_prompt_with_domain_and_truncated_document():
    stage = RateDocuments(Sampling(max_tokens=64, temperature=0.0), domain="chemistry", max_chars=50)
    messages = stage.build({"id": "d1", "text": "Moles and molar mass. " * 10})
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "chemistry" in messages[0]["content"] and "chemistry" in messages[1]["content"]
    assert ("Moles and molar mass. " * 10)[:50] in messages[1]["content"]
    assert ("Moles and molar mass. " * 10)[:51] not in messages[1]["content"]
    assert "{{" not in messages[1]["content"]
    assert stage.name == "rate" and stage.prompt_version == "v1"


def test_stage_parse_returns_ratings_file_record():
    stage = RateDocuments(Sampling())
    assert stage.parse({"id": "doc-3", "text": "x"}, ["Clear and relevant.\nRating: 8"]) == [
        {"id": "doc-3", "rating": 8.0, "domain": "mathematics"}]
    with pytest.raises(Unparsable):
        stage.parse({"id": "doc-3", "text": "x"}, ["no idea"])
