"""Rich progress bars with rate and ETA.

One shared :class:`rich.progress.Progress` is used when one is active (``tenfold reproduce`` shows
an overall bar and the current experiment's bars together); otherwise each call makes its own.
Set ``TENFOLD_PROGRESS=0`` to silence bars (tests do). When an exception leaves a display, its bars are
cleared from the terminal, so an error line stands alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

T = TypeVar("T")
_ACTIVE: list[Progress] = []
console = Console(stderr=True)


def enabled() -> bool:
    return os.environ.get("TENFOLD_PROGRESS", "1") not in ("0", "false", "no")


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[dim]{task.fields[rate]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=False, disable=not enabled(),
    )


@contextlib.contextmanager
def session() -> Iterator[Progress]:
    """Make a progress display shared by every :func:`track` inside the ``with`` block."""
    progress = make_progress()
    _ACTIVE.append(progress)
    try:
        with progress:
            try:
                yield progress
            except BaseException:
                progress.live.transient = True  # an error line follows: clear the bars instead of leaving them
                raise
    finally:
        _ACTIVE.remove(progress)


class Bar:
    """A handle on one task of the active display: ``advance()``, ``update(**fields)``."""

    def __init__(self, progress: Progress, task: int) -> None:
        self.progress, self.task = progress, task

    def advance(self, n: float = 1.0) -> None:
        self.progress.advance(self.task, n)
        speed = self.progress.tasks[self._index()].speed
        self.progress.update(self.task, rate=f"{speed:.1f}/s" if speed else "")

    def describe(self, text: str) -> None:
        self.progress.update(self.task, description=text)

    def _index(self) -> int:
        for i, t in enumerate(self.progress.tasks):
            if t.id == self.task:
                return i
        return -1


@contextlib.contextmanager
def bar(description: str, total: float | None) -> Iterator[Bar]:
    """A bar on the shared display (or a display of its own); removed from a shared one when done."""
    if _ACTIVE:
        progress = _ACTIVE[-1]
        task = progress.add_task(description, total=total, rate="")
        try:
            yield Bar(progress, task)
        finally:
            progress.remove_task(task)
    else:
        with session() as progress:
            task = progress.add_task(description, total=total, rate="")
            yield Bar(progress, task)


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar: ``for x in track(items, "epochs"): ...``."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with bar(description, total) as b:
        for item in iterable:
            yield item
            b.advance()
