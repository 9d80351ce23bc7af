"""Stage ``rate``: an LLM rates a reference document 1-10 for a domain.

The ratings train the domain scorer of stage 1
(:class:`synthllm.quality.DomainScorer`). The prompt asks for domain
relevance, clarity and language quality in one overall score and a final
``Rating: <n>`` line; the parser also accepts the usual deviations of small
models ("7/10", "**8**", "Score: 6.5", a bare number).
"""

from __future__ import annotations

import re

from ..llm.base import Sampling
from .base import ModelStage, Record, Unparsable

_NUMBER = r"(\d+(?:\.\d+)?)"
# most specific first: an explicit label, then "n/10" or "n out of 10", bold, a bare number
_PATTERNS = [
    re.compile(r"\b(?:rating|score)\b[\s:*=_#-]*(?:is|of|would be|:)?[\s:*=_#-]*" + _NUMBER, re.IGNORECASE),
    re.compile(_NUMBER + r"\s*(?:/\s*10|out\s+of\s+(?:10|ten))\b", re.IGNORECASE),
    re.compile(r"\*\*\s*" + _NUMBER + r"\s*\*\*"),
    re.compile(r"^\s*" + _NUMBER + r"\s*\.?\s*$"),
]


def parse_rating(text: str) -> float:
    """Read a 1-10 rating from a model reply.

    The last match of the most specific pattern found wins, so that a final
    ``Rating: 7`` line beats numbers quoted in the justification.

    Parameters
    ----------
    text : str
        The model's reply.

    Returns
    -------
    float
        The rating, in [1, 10].

    Raises
    ------
    Unparsable
        When no rating is found or it lies outside 1-10.
    """
    for pattern in _PATTERNS:
        matches = pattern.findall(text or "")
        if matches:
            rating = float(matches[-1])
            if not 1.0 <= rating <= 10.0:
                raise Unparsable(f"rating {matches[-1]} is outside 1-10")
            return rating
    raise Unparsable("no rating found (expected a line 'Rating: <1-10>')")


class RateDocuments(ModelStage):
    """Ask the model for a 1-10 domain/clarity/language rating of each document.

    Parameters
    ----------
    sampling : Sampling
        Sampling parameters; a low temperature and ~128 tokens suit ratings.
    prompt_version : str or None, default=None
        Version of ``rate_document`` to use; ``None`` takes the newest.
    domain : str, default="mathematics"
        Domain the documents are judged for.
    max_chars : int, default=6000
        Characters of the document put into the prompt.
    text_key : str, default="text"
        Field of the input record holding the document.

    Notes
    -----
    Input records: ``{"id", text_key}``. Output records:
    ``{"id", "rating", "domain"}`` (the format of a ratings file).
    """

    name = "rate"
    template_name = "rate_document"

    def __init__(self, sampling: Sampling, prompt_version: str | None = None, domain: str = "mathematics",
                 max_chars: int = 6000, text_key: str = "text"):
        super().__init__(sampling, prompt_version)
        self.domain = domain
        self.max_chars = max_chars
        self.text_key = text_key

    def build(self, record: Record) -> list[dict]:
        """Chat messages asking for the rating of one document."""
        document = str(record.get(self.text_key) or "")[: self.max_chars]
        return self.template.render(domain=self.domain, document=document)

    def parse(self, record: Record, texts: list[str]) -> list[Record]:
        """One ``{"id", "rating", "domain"}`` record; raises Unparsable without a readable rating."""
        return [{"id": self.record_id(record), "rating": parse_rating(texts[0]), "domain": self.domain}]
