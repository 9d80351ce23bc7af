"""What every ``synthllm`` command shares: one-line errors and their exit statuses.

:func:`fail` prints ``error: <message>`` on stderr (never hard-wrapped, so file
paths stay whole in logs) and exits; :func:`handle_errors` wraps a command so
that any :class:`~synthllm.errors.SynthLLMError` (and an interrupt) becomes that
one line with the error's exit status, while a real bug keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, NoReturn, TypeVar

import typer

from .errors import EXIT_BAD_INPUT, SynthLLMError

F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def handle_errors(command: F) -> F:
    """Decorator for a typer command: expected errors become ``error: ...`` and an exit status."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SynthLLMError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; finished work is kept: run the same command again to resume", 130)

    return wrapper  # type: ignore[return-value]
