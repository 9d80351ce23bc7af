"""Versioned prompt templates.

Each model call kind has files ``<name>.v<k>.txt`` here. A file holds a
``<<<system>>>`` section and a ``<<<user>>>`` section, and optionally a worked
example as ``<<<example_user>>>`` / ``<<<example_assistant>>>`` sections, sent
as a prior exchange (small models follow a shown answer far better than a
described one); ``{{field}}`` placeholders are filled by the stage. (Double braces, because prompts carry
LaTeX, whose ``{`` and ``$`` would clash with ``str.format`` and
``string.Template``.) The newest version is used unless the config pins one;
the version used is written into every record and the manifest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_SECTION = re.compile(r"^<<<(system|user|example_user|example_assistant)>>>\s*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_FILE = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.txt$")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    system: str
    user: str
    example: tuple[str, str] | None = None

    def render(self, **fields: str) -> list[dict]:
        """Chat messages with every ``{{field}}`` replaced; a missing field is an error."""

        def fill(text: str) -> str:
            def sub(match: re.Match) -> str:
                key = match.group(1)
                if key not in fields:
                    raise KeyError(f"prompt {self.name}.{self.version} needs field {key!r}")
                return str(fields[key])

            return _PLACEHOLDER.sub(sub, text)

        messages = []
        if self.system:
            messages.append({"role": "system", "content": fill(self.system)})
        if self.example:
            messages.append({"role": "user", "content": fill(self.example[0])})
            messages.append({"role": "assistant", "content": fill(self.example[1])})
        messages.append({"role": "user", "content": fill(self.user)})
        return messages


def available_versions(name: str) -> list[int]:
    versions = []
    for entry in resources.files(__package__).iterdir():
        match = _FILE.match(entry.name)
        if match and match.group("name") == name:
            versions.append(int(match.group("version")))
    return sorted(versions)


def load_template(name: str, version: str | None = None) -> PromptTemplate:
    """Load ``name`` at ``version`` ("v2" or "2"), or its newest version."""
    versions = available_versions(name)
    if not versions:
        raise FileNotFoundError(f"no prompt template named {name!r} in synthllm/prompts")
    if version is None:
        number = versions[-1]
    else:
        number = int(str(version).lstrip("v"))
        if number not in versions:
            raise FileNotFoundError(f"prompt {name!r} has versions {versions}, not {version!r}")
    text = resources.files(__package__).joinpath(f"{name}.v{number}.txt").read_text(encoding="utf-8")
    parts = _SECTION.split(text)
    # parts: [preamble, tag, body, tag, body, ...]; the preamble holds comments only
    sections = {parts[i]: parts[i + 1].strip("\n") for i in range(1, len(parts) - 1, 2)}
    if "user" not in sections:
        raise ValueError(f"prompt {name}.v{number}.txt has no <<<user>>> section")
    example = None
    if "example_user" in sections or "example_assistant" in sections:
        if not ("example_user" in sections and "example_assistant" in sections):
            raise ValueError(f"prompt {name}.v{number}.txt needs both <<<example_user>>> and <<<example_assistant>>>")
        example = (sections["example_user"].strip(), sections["example_assistant"].strip())
    return PromptTemplate(name, f"v{number}", sections.get("system", "").strip(), sections["user"].strip(), example)
