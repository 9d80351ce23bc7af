"""Grading answers for mathematical equivalence with ``math-verify``.

Hugging Face's ``math-verify`` parses LaTeX and plain expressions into sympy
and compares them (``1/2``, ``0.5`` and ``\\frac{1}{2}`` are equal; so are
``(3, \\frac{\\pi}{2})`` and ``\\left( 3, \\frac{\\pi}{2} \\right)``). We only
choose *which part* of a text is the answer: the part after GSM8K's last
``####`` when there is one, otherwise math-verify's own extraction (the last
``\\boxed{}``, else the last expression). A gold answer without LaTeX
delimiters is wrapped in ``$…$`` so that LaTeX such as ``\\frac{14}{3}`` parses.
On the 1,319 GSM8K test references, every gold answer matches its own solution
text (tests/study/test_grading.py checks real pairs from ../shared/data).
"""

from __future__ import annotations

from functools import lru_cache

from ..errors import MissingDependency

__all__ = ["answer_part", "is_correct", "parse_gold"]


def _math_verify():
    try:
        import math_verify
    except ImportError:
        raise MissingDependency("grading needs math-verify: pip install 'synthllm[study]'") from None
    return math_verify


def answer_part(text: str) -> str:
    """The part of a reply or solution that holds the final answer (after ``####`` if present)."""
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    return text


@lru_cache(maxsize=4096)
def parse_gold(final: str):
    """Parse a reference final answer (plain, ``$…$`` or ``\\boxed{}``) with math-verify."""
    mv = _math_verify()
    text = answer_part(final)
    if "$" not in text and "\\boxed" not in text and "\\(" not in text:
        parsed = mv.parse(f"${text}$")
        if parsed:
            return parsed
    return mv.parse(text)


def is_correct(reply: str | None, final: str) -> bool:
    """Whether ``reply`` states an answer equivalent to the reference ``final``.

    Parameters
    ----------
    reply : str or None
        The model's answer text (None: a failed request, graded wrong).
    final : str
        The reference final answer (or a whole reference solution).

    Returns
    -------
    bool
    """
    if not reply:
        return False
    mv = _math_verify()
    gold = parse_gold(final)
    if not gold:
        return False
    predicted = mv.parse(answer_part(reply))
    if not predicted:
        return False
    try:
        return bool(mv.verify(gold, predicted))
    except Exception:  # math-verify can raise on exotic sympy objects; an ungradable answer is wrong
        return False
