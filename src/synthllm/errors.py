"""synthllm's errors: one hierarchy, so a command can tell bad input from a bug.

Every error a user can cause or fix (a missing file, a bad field, a server
that is down, a missing optional package) is a :class:`SynthLLMError`. The
command-line program prints its message as one line, ``error: <message>``, and
exits with its ``exit_code`` (2 for bad input, 3 for work left undone); any
other exception is a bug and keeps its traceback. Library code raises these
rather than ``ValueError``/``RuntimeError`` with a special message, and the CLI
never matches exception names as strings.

The message of an :class:`InputError` names *where* (file, line, field) and
*what* is wrong; build it with :meth:`InputError.at` so every command words
locations the same way.
"""

from __future__ import annotations

from pathlib import Path

#: exit status for bad input (a file, a field, an option): nothing was done
EXIT_BAD_INPUT = 2
#: exit status for a run that stopped with work left (server down, time budget, failures still pending)
EXIT_WORK_LEFT = 3


class SynthLLMError(Exception):
    """Base class of every error synthllm expects and explains in one line."""

    exit_code: int = EXIT_BAD_INPUT


class InputError(SynthLLMError, ValueError):
    """Input that cannot be used: a file, a line of it, a config field or an option.

    ``ValueError`` stays a base class so older ``except ValueError`` callers keep working.
    """

    @classmethod
    def at(cls, where: str | Path, what: str, line: int | None = None, field: str | None = None) -> "InputError":
        """``file:line: field: what`` (the parts that are known)."""
        location = str(where)
        if line is not None:
            location += f":{line}"
        if field:
            location += f": {field}"
        return cls(f"{location}: {what}")


class ConfigError(InputError):
    """A config file that cannot be used; the message is one line naming the file and field."""


class MissingDependency(SynthLLMError, ImportError):
    """An optional package a feature needs is not installed; the message says what to install."""


class BackendUnavailable(SynthLLMError, RuntimeError):
    """The model backend cannot serve (server down, breaker open, bad credentials, model missing)."""

    exit_code = EXIT_WORK_LEFT


class StorageError(SynthLLMError):
    """The run folder cannot be written (disk full, read-only filesystem); finished work is kept."""

    exit_code = EXIT_WORK_LEFT


class RunFolderBusy(SynthLLMError):
    """Another synthllm process holds the run folder's lock."""


class WorkLeft(SynthLLMError):
    """A run stopped with work still pending; the same command resumes it."""

    exit_code = EXIT_WORK_LEFT
