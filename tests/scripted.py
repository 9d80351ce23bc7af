"""A scripted responder that answers synthllm's prompts the way a well-behaved model would.

It reads the prompt, recognises which stage asks (by the template's own
wording), and writes a reply in that stage's format built from the prompt's
content: concepts are the vocabulary terms that occur in the document, so the
concept graph has real co-occurrences; questions quote the document; answers
box a number. Deterministic, so runs are reproducible.
"""

from __future__ import annotations

import hashlib
import re

VOCABULARY = [
    "whole numbers", "place value", "fractions", "decimals", "percent", "ratio", "integers", "variables",
    "equation", "inequality", "slope", "intercept", "polynomial", "exponent", "factor", "square root",
    "function", "graph", "logarithm", "quadratic", "rational expression", "system of equations", "angle",
    "area", "perimeter", "volume", "probability", "sequence", "absolute value", "coordinate", "line",
    "rounding", "division", "multiplication", "addition", "subtraction", "number line", "formula",
]
TOPICS = ["Arithmetic", "Algebraic expressions", "Linear equations", "Functions and graphs",
          "Geometry", "Number sense", "Polynomials", "Exponents and radicals"]


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _document(user: str) -> str:
    match = re.search(r"Document:\n(.*?)(?:\n\nKey concepts|\n\nTask:|$)", user, re.DOTALL)
    return match.group(1) if match else user


def concepts_reply(document: str) -> str:
    low = document.lower()
    found = [term for term in VOCABULARY if term in low] or VOCABULARY[_h(document) % 10: _h(document) % 10 + 6]
    h = _h(document)
    topics = [TOPICS[h % len(TOPICS)], TOPICS[(h // 7) % len(TOPICS)]]
    if topics[0] == topics[1]:
        topics = topics[:1]
    lines = ["<level>high school</level>", "<subject>Mathematics</subject>", "<topic>"]
    lines += [f"{i}. {t}" for i, t in enumerate(topics, 1)] + ["</topic>", "<key_concept>"]
    for i, topic in enumerate(topics, 1):
        lines.append(f"{i}. {topic}")
        chosen = found[i - 1::len(topics)] or found
        lines += [f"{i}.{j}. {c}" for j, c in enumerate(chosen[:20], 1)]
    lines.append("</key_concept>")
    return "\n".join(lines)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 30 <= len(s.strip()) <= 200]


def level1_reply(document: str) -> str:
    sentences = _sentences(document) or ["It explains numbers."]
    blocks = []
    for i, sentence in enumerate(sentences[:2], 1):
        blocks.append(f"<Q{i}>\nQuestion: Explain, with an example, why the following holds: {sentence}\n"
                      f"Orig_tag:<newly_created>\nLevel:<middle_school>\n</Q{i}>")
    return "\n".join(blocks)


def combined_reply(concepts_text: str, tag: str) -> str:
    terms = re.findall(r"\d+\.\d+\.\s*(.+)", concepts_text)
    if len(terms) < 2:
        terms = (terms + ["ratio", "percent"])[:2]
    blocks = []
    for i in range(min(2, len(terms) - 1)):
        pair = terms[i:i + 2]
        blocks.append(f"<Q{i + 1}>\nSelected Concepts: [{', '.join(pair)}]\n"
                      f"Question: ({tag}) How do {pair[0]} and {pair[1]} combine when solving $x + {i + 2} = {i + 7}$?\n"
                      f"</Q{i + 1}>")
    return "\n".join(blocks)


def answer_reply(question: str) -> str:
    return f"We work step by step on: {question[:60]}\nFinal answer: \\boxed{{{_h(question) % 97}}}"


NON_DOMAIN_WORDS = ("history", "philosophy", "war", "president", "colonial")


def respond(messages: list[dict]) -> str:
    user = messages[-1]["content"]
    if "Judge the document below" in user:
        document = user.split("Document:")[-1].lower()
        off_topic = sum(document.count(w) for w in NON_DOMAIN_WORDS) > 2
        return "It is a clear text.\nRating: 2" if off_topic else "Clear worked examples.\nRating: 8"
    if "describe what a student learns" in user:
        return concepts_reply(_document(user))
    if "exam questions about the document" in user:  # above (v5) or below (v6)
        return level1_reply(_document(user))
    if "Reference 1:" in user:
        return combined_reply(re.split(r"Task:|\n\nReference 1:", user.split("grouped by topic:")[1])[0], "L3")
    if "Key concepts of the document:" in user:
        return combined_reply(re.split(r"Task:|\n\nDocument:", user.split("Key concepts of the document:")[1])[0], "L2")
    if "Solve the problem" in user:
        return answer_reply(user.split("Problem:")[-1])
    raise ValueError("scripted responder: unknown prompt")
