"""Progress bars with rate, ETA and generated tokens, on stderr (rich)."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

# soft_wrap: never break a message (paths in it must stay copyable); the terminal wraps if it must
console = Console(stderr=True, soft_wrap=True)


class StageProgress:
    """One bar: records done out of a total, with a live count of generated tokens."""

    def __init__(self, progress: Progress | None, label: str, total: int | None):
        self._progress = progress
        self._tokens = 0
        self._label = label
        self._task = progress.add_task(label, total=total, tokens="") if progress else None

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def skip(self, n: int) -> None:
        """Work already done in an earlier run."""
        self.advance(n)

    def tokens(self, n: int) -> None:
        self._tokens += n
        if self._progress is not None and n:
            self._progress.update(self._task, tokens=f"{self._tokens:,} tok")


@contextmanager
def stage_progress(label: str, total: int | None, enabled: bool = True):
    """A progress bar for one stage; silent when ``enabled`` is False or stderr is not a terminal."""
    show = enabled and sys.stderr.isatty()
    if not show:
        yield StageProgress(None, label, total)
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[tokens]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        yield StageProgress(progress, label, total)
