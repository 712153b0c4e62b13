"""The one progress bar of the project (rich): a bold label, a bar, done/total and the time left.

``progress_bar(enabled)`` is what every long loop (training, dataset builds, benchmarks) shows; disabled it
prints nothing (tests, ``--no-progress``, worker processes).
"""

from __future__ import annotations

from typing import Any


def progress_bar(enabled: bool = True, *, transient: bool = False, elapsed: bool = False, **kwargs: Any):
    """A ``rich.progress.Progress`` with the project's columns (time elapsed instead of left with ``elapsed``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    clock = TimeElapsedColumn() if elapsed else TimeRemainingColumn()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), clock,
                    disable=not enabled, transient=transient, **kwargs)
