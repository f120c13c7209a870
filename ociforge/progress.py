"""Progress display: rich bars on a terminal, silence for `--json` and pipes."""

from __future__ import annotations

import sys
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


class Reporter:
    """One bar per named piece of work; a no-op when disabled. rich is imported only
    when bars are drawn or the console is used (a quiet or --json run, as on CI,
    does not load it)."""

    def __init__(self, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        if enabled:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description:<28}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), console=self.console,
                transient=True)

    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        return Console(stderr=True)

    def __enter__(self) -> Reporter:
        if self._progress:
            self._progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress:
            self._progress.stop()

    def update(self, what: str, done: int, total: int | None) -> None:
        """Set absolute progress of `what` (created on first call)."""
        if not self._progress:
            return
        if what not in self._tasks:
            self._tasks[what] = self._progress.add_task(what, total=total)
        self._progress.update(self._tasks[what], completed=done, total=total)

    def advance(self, what: str, n: int, total: int | None = None) -> None:
        if not self._progress:
            return
        if what not in self._tasks:
            self._tasks[what] = self._progress.add_task(what, total=total)
        self._progress.advance(self._tasks[what], n)
