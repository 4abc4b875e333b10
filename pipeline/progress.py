"""Progress a person can watch: one rich bar per stage loop (arms x seeds, trials, curve points).

Shown only on a terminal: under DVC, CI, a pipe or pytest nothing is drawn, so logs and captured
output stay clean. rich rather than tqdm because Lightning already draws its bars with rich
(the pretrain epochs), so the console looks the same throughout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def interactive() -> bool:
    """Whether stderr is a terminal (bars are drawn only then)."""
    return sys.stderr.isatty()


class Bar:
    """A progress bar (or a silent stand-in off a terminal): ``advance(text)`` after each item."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress, self._task = progress, task

    @property
    def visible(self) -> bool:
        """Whether a bar is drawn (status text worth computing)."""
        return self._progress is not None

    def advance(self, text: str | None = None) -> None:
        """One item done; ``text`` replaces the line's status text."""
        if self._progress is not None:
            kw = {"status": text} if text is not None else {}
            self._progress.update(self._task, advance=1, **kw)

    def status(self, text: str) -> None:
        """Change the status text without advancing (e.g. the item now running)."""
        if self._progress is not None:
            self._progress.update(self._task, status=text)


SILENT = Bar(None, None)


@contextmanager
def bar(description: str, total: int | None, enabled: bool | None = None) -> Iterator[Bar]:
    """A progress bar over ``total`` items (None: count only) labelled ``description``.

    Args:
        description: What is being done (e.g. ``transfer``).
        total: Number of items, or None when it is not known in advance.
        enabled: Force on/off; default on only when stderr is a terminal.
    """
    if not (interactive() if enabled is None else enabled):
        yield Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn() if total else TextColumn("{task.completed} done"),
        TimeElapsedColumn(),
        *([TimeRemainingColumn()] if total else []),
        TextColumn("{task.fields[status]}"),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield Bar(progress, progress.add_task(description, total=total, status=""))


def track(
    items: Iterable[T], description: str, label: Callable[[T], str], total: int | None = None
) -> Iterator[T]:
    """Yield ``items`` while a bar shows which one runs (``label(item)``) and how many are done."""
    items = list(items) if total is None else items
    with bar(description, len(items) if total is None else total) as b:
        for item in items:
            b.status(label(item))
            yield item
            b.advance()


def counted(fn: Callable[..., T], b: Bar, label: Callable[..., str]) -> Callable[..., T]:
    """``fn`` that advances ``b`` after every call, showing ``label(*args)`` while it runs."""

    def call(*args: Any, **kwargs: Any) -> T:
        b.status(label(*args, **kwargs))
        try:
            return fn(*args, **kwargs)
        finally:
            b.advance()

    return call
