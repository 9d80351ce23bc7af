"""Parsers for what models really emit.

Small models drop closing tags, number things their own way ("Q1:", "1)",
"**<Q1>**"), wrap output in prose or Markdown, and forget brackets. Large
models add preambles. These functions accept all of that and return plain
Python values; they raise :class:`Unparsable` with a reason when nothing
usable is there. Each tolerance is exercised by a fixture in
``tests/fixtures/model_outputs``.
"""

from __future__ import annotations

import re
from collections import Counter

from .base import Unparsable

LEVELS = ("elementary", "middle_school", "high_school", "college", "grad_school", "competition")

_Q_OPEN = re.compile(r"[*#\s]*<\s*q\s*(\d+)\s*>[*:\s]*", re.IGNORECASE)
_Q_CLOSE = re.compile(r"<\s*/\s*q\s*\d*\s*>", re.IGNORECASE)
_LABEL = r"(?:question|orig[_ ]?tag|level|difficulty|selected[_ ]concepts?|concepts)"
_FIELD = re.compile(rf"^[\s*_#-]*({_LABEL})[\s*_]*(?:\d{{1,2}})?[\s*_]*[:：]\s*", re.IGNORECASE | re.MULTILINE)
_NUMBERED = re.compile(r"^\s*(?:\*\*)?(?:q(?:uestion)?\s*)?(\d{1,2})\s*[.):\]]\s*(?:\*\*)?\s*(.+)$", re.IGNORECASE)
_QUESTION_LABEL = re.compile(r"^\s*(?:\*\*)?question\s*(\d{1,2})?\s*[:.)]\s*(?:\*\*)?", re.IGNORECASE | re.MULTILINE)
_MIN_QUESTION_CHARS = 12


def _clean(text: str) -> str:
    text = re.sub(r"[ \t]+\n", "\n", text)
    return text.strip().strip("*").strip()


def split_question_blocks(text: str) -> list[str]:
    """Split a reply into per-question blocks.

    Tagged blocks ``<Q1> ... </Q1>`` first (closing tags optional: a block
    runs to the next opening tag). Without tags: ``Question:``/``Question 2:``
    labels; then a numbered list (``1.``, ``2)``, ``Q3:``). Returns raw block
    texts, possibly empty.
    """
    opens = list(_Q_OPEN.finditer(text))
    if opens:
        blocks = []
        for i, match in enumerate(opens):
            end = opens[i + 1].start() if i + 1 < len(opens) else len(text)
            body = _Q_CLOSE.split(text[match.end():end])[0]
            blocks.append(body)
        return [b for b in (_clean(b) for b in blocks) if b]
    labels = list(_QUESTION_LABEL.finditer(text))
    if len(labels) >= 1:
        starts = [m.start() for m in labels] + [len(text)]
        return [b for b in (_clean(text[starts[i]:starts[i + 1]]) for i in range(len(labels))) if b]
    items = []
    for line in text.splitlines():
        match = _NUMBERED.match(line)
        if match:
            items.append(match.group(2))
        elif items and line.strip() and not line.strip().startswith(("#", "---")):
            items[-1] += "\n" + line.strip()  # continuation of a multi-line item
    return [b for b in (_clean(i) for i in items) if b]


def parse_fields(block: str) -> dict[str, str]:
    """Labelled fields of one block (``Question:``, ``Orig_tag:``, ``Level:``, ``Selected Concepts:``).

    Text before the first label counts as the question when there is no
    ``Question:`` label.
    """
    fields: dict[str, str] = {}
    matches = list(_FIELD.finditer(block))
    preamble = block[: matches[0].start()] if matches else block
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(block)
        key = re.sub(r"[\s_]+", "_", match.group(1).lower())
        key = {"orig_tag": "orig_tag", "origtag": "orig_tag", "difficulty": "level",
               "selected_concept": "selected_concepts", "concepts": "selected_concepts"}.get(key, key)
        fields.setdefault(key, _clean(block[match.end():end]))
    if "question" not in fields and _clean(preamble):
        fields["question"] = _clean(preamble)
    return fields


def normalise_level(value: str | None) -> str | None:
    """Map 'High School', '<high_school>', 'grad' ... to one of :data:`LEVELS`."""
    if not value:
        return None
    key = re.sub(r"[^a-z]+", "_", value.lower()).strip("_")
    for level in LEVELS:
        if level in key or level.replace("_", "") in key.replace("_", ""):
            return level
    aliases = {"graduate": "grad_school", "university": "college", "undergraduate": "college",
               "primary": "elementary", "olympiad": "competition", "middle": "middle_school",
               "high": "high_school", "secondary": "high_school"}
    for alias, level in aliases.items():
        if alias in key:
            return level
    return None


def normalise_orig_tag(value: str | None) -> str | None:
    if not value:
        return None
    low = value.lower()
    if "orig" in low:
        return "original_question"
    if "new" in low or "creat" in low:
        return "newly_created"
    return None


def parse_concept_list(value: str | None) -> list[str]:
    """``[a, b]``, ``a, b``, ``"a"; "b"`` or a bulleted list → ``["a", "b"]``."""
    if not value:
        return []
    value = value.strip().strip("[]")
    parts = re.split(r"\s*(?:,|;|\n|\band\b)\s*", value) if "\n" not in value else re.split(r"\n", value)
    out = []
    for part in parts:
        part = re.sub(r"^[\s\-*•\d.)]+", "", part).strip().strip("'\"[]` ")
        if part and part not in out:
            out.append(part)
    return out


_NOT_QUESTION = re.compile(r"^(?:the\s+)?(?:answer|solution|task|note|explanation|example)\b", re.IGNORECASE)


def trim_question(text: str) -> str:
    """The question without what small models append to it.

    Paragraphs are kept up to and including the first that ends with "?";
    an answer / solution / task paragraph, or a paragraph seen before (a
    model looping), ends the question earlier.
    """
    kept: list[str] = []
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not paragraph:
            continue
        if (kept and _NOT_QUESTION.match(paragraph)) or paragraph in kept:
            break
        kept.append(paragraph)
        if paragraph.endswith("?"):
            break
    return "\n\n".join(kept)


def parse_questions(text: str, max_questions: int, sentinel: str | None = None,
                    with_concepts: bool = False) -> list[dict]:
    """Questions from a Level-1/2/3 reply.

    Returns dicts with ``question`` and, when present, ``orig_tag``, ``difficulty``
    and ``selected_concepts``. At most ``max_questions`` are kept (the rest are
    counted by the caller as ``extra``). Raises :class:`Unparsable` when no
    question is found.
    """
    questions = []
    for block in split_question_blocks(text):
        fields = parse_fields(block)
        question = trim_question(fields.get("question", ""))
        if len(question) < _MIN_QUESTION_CHARS:
            continue
        if sentinel and sentinel in question:
            continue
        item = {"question": question}
        if with_concepts:
            item["selected_concepts"] = parse_concept_list(fields.get("selected_concepts"))
        else:
            item["orig_tag"] = normalise_orig_tag(fields.get("orig_tag"))
            item["difficulty"] = normalise_level(fields.get("level"))
        questions.append(item)
    if not questions:
        raise Unparsable("no question found" if text.strip() else "empty reply")
    return questions


_SECTION_RE = {name: re.compile(rf"<\s*{name}\s*>(.*?)(?:<\s*/\s*{name}\s*>|(?=<\s*[a-z_]+\s*>)|\Z)",
                                re.IGNORECASE | re.DOTALL)
               for name in ("level", "subject", "topic", "topics", "key_concept", "key_concepts")}
_TOPIC_LINE = re.compile(r"^\s*(?:[-*•]\s*)?(?:topic\s*)?(\d{1,2})\s*[.):]\s*(?!\d)(.+)$", re.IGNORECASE)
_CONCEPT_LINE = re.compile(r"^\s*(?:[-*•]\s*)?(\d{1,2})\s*\.\s*(\d{1,2})\s*[.):]?\s+(.+)$")
_BULLET_LINE = re.compile(r"^\s*[-*•]\s+(.+)$")


def _section(name: str, text: str) -> str | None:
    for key in (name, name + "s"):
        regex = _SECTION_RE.get(key)
        match = regex.search(text) if regex else None
        if match:
            return match.group(1).strip()
    return None


def _strip_markup(value: str) -> str:
    value = re.sub(r"\*\*|__|`", "", value).strip()
    return value.rstrip(".:;,").strip()


def parse_concepts(text: str, max_topics: int = 5, max_concepts: int = 20) -> dict:
    """Level, subject and topics with their key concepts from a concept-extraction reply.

    Returns ``{"level", "subject", "topics": [{"topic", "concepts": [...]}]}``.
    Topics come from the ``<key_concept>`` section's ``n.`` headers (names from
    ``<topic>`` where they agree by number); concepts from its ``n.m.`` lines or
    bullets under a header. Topics without concepts are dropped; at most
    ``max_topics`` topics and ``max_concepts`` concepts each are kept.
    """
    level = _section("level", text)
    subject = _section("subject", text)
    topic_names: dict[int, str] = {}
    topic_block = _section("topic", text)
    if topic_block:
        for line in topic_block.splitlines():
            match = _TOPIC_LINE.match(line)
            if match:
                topic_names.setdefault(int(match.group(1)), _strip_markup(match.group(2)))
    kc_block = _section("key_concept", text)
    if kc_block is None:
        # no tag at all: read the whole reply as the concept list
        kc_block = text
    concepts: dict[int, list[str]] = {}
    headers: dict[int, str] = {}
    current: int | None = None
    for line in kc_block.splitlines():
        if not line.strip():
            continue
        concept = _CONCEPT_LINE.match(line)
        if concept:
            current = int(concept.group(1))
            concepts.setdefault(current, []).append(_strip_markup(concept.group(3)))
            continue
        topic = _TOPIC_LINE.match(line)
        if topic:
            current = int(topic.group(1))
            headers.setdefault(current, _strip_markup(topic.group(2)))
            concepts.setdefault(current, [])
            continue
        bullet = _BULLET_LINE.match(line)
        if bullet and current is not None:
            concepts[current].append(_strip_markup(bullet.group(1)))
    merged: dict[str, dict] = {}  # a topic repeated under another number is one topic
    for number in sorted(concepts):
        name = topic_names.get(number) or headers.get(number)
        if not name:
            continue
        topic = merged.setdefault(name.lower(), {"topic": name, "concepts": []})
        for item in concepts[number]:
            if item and item.lower() not in (c.lower() for c in topic["concepts"]) and len(item) <= 120:
                topic["concepts"].append(item)
    topics = [{"topic": t["topic"], "concepts": t["concepts"][:max_concepts]} for t in merged.values() if t["concepts"]]
    if not topics:
        raise Unparsable("no topic with key concepts found" if text.strip() else "empty reply")
    return {
        "level": normalise_level(level) or (_strip_markup(level) if level else None),
        "subject": _strip_markup(subject) if subject else None,
        "topics": topics[:max_topics],
    }


_BOXED = re.compile(r"\\boxed\s*\{")
_FINAL_LINE = re.compile(r"final answer\s*(?:is)?\s*[:：]?\s*(.+)", re.IGNORECASE)


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, with nested braces balanced."""
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    depth = 1
    for pos in range(start, len(text)):
        char = text[pos]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:pos].strip()
    return text[start:].strip() or None  # unclosed: keep what is there


def extract_final_answer(text: str) -> str | None:
    """The final answer: last ``\\boxed{}``, else a 'Final answer:' line, else None."""
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    lines = _FINAL_LINE.findall(text)
    if lines:
        return lines[-1].strip().strip("$*. ") or None
    return None


def normalise_final_answer(answer: str) -> str:
    """A comparison key for majority voting: spacing, ``$``, trailing dots and ``\\text{}`` removed."""
    key = re.sub(r"\\text\{([^}]*)\}", r"\1", answer)
    key = re.sub(r"\\[,;!]|\\left|\\right|\$|\s+", "", key)
    return key.rstrip(".").lower()


def majority_answer(answers: list[str | None]) -> tuple[int, float]:
    """Index of a reply carrying the most common final answer, and the agreement share.

    Replies without a final answer do not vote; with no votes at all, reply 0
    and agreement 0.0 are returned.
    """
    keys = [normalise_final_answer(a) if a else None for a in answers]
    votes = Counter(k for k in keys if k)
    if not votes:
        return 0, 0.0
    best, count = votes.most_common(1)[0]
    return keys.index(best), count / len(answers)
