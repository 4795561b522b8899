"""Terminal display: rich progress bars behind the ``progress(stage, done, total, info)`` callback.

Library code only calls the callback; this module is the one place that draws, so library use stays
silent and the CLI shows one bar per stage (feature extraction, epochs, back ends, scoring).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from stethoscope.progress import Progress as ProgressFn

console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )
    for noisy in ("numba", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class ProgressDisplay:
    """Callable progress sink: one bar per stage name, with the latest metrics as text."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: float, total: int, info: dict | None = None) -> None:
        text = _fmt(info or {})
        task = self._tasks.get(stage)
        if task is not None and self._progress.tasks[task].finished and done < total:
            del self._tasks[stage]
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total, info=text)
        self._progress.update(self._tasks[stage], completed=done, total=total, info=text)


class LineProgress:
    """Progress for logs and pipes: a line per stage every ``every`` seconds and at completion."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._start: dict[str, float] = {}
        self._partial: set[str] = set()

    def __call__(self, stage: str, done: float, total: int, info: dict | None = None) -> None:
        now = time.monotonic()
        self._start.setdefault(stage, now)
        whole = float(done).is_integer()
        # after a mid-epoch line (fractional ``done``), the epoch's own line with its metrics is due
        due = whole and stage in self._partial
        # a stage's first line always shows: monotonic time counts from boot, so "never shown" must
        # not be read as "shown at 0" (on a machine up for less than ``every`` it would be throttled)
        last = self._last.get(stage)
        if done < total and not due and last is not None and now - last < self.every:
            return
        if whole:
            self._partial.discard(stage)
        else:
            self._partial.add(stage)
        self._last[stage] = now
        elapsed = now - self._start[stage]
        console.print(
            f"{stage}: {done}/{total} ({elapsed:.0f} s) {_fmt(info or {})}",
            highlight=False,
            soft_wrap=True,
        )
        if done >= total:  # the same stage name may come back later (e.g. test features)
            self._start.pop(stage, None)
            self._last.pop(stage, None)
            self._partial.discard(stage)


@contextmanager
def progress_display(enabled: bool = True) -> Iterator[ProgressFn | None]:
    if not enabled:
        yield None
        return
    if not console.is_terminal:
        yield LineProgress()
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )
    with bar:
        yield ProgressDisplay(bar)


def _fmt(info: dict) -> str:
    parts = []
    for k, v in info.items():
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return "  ".join(parts)
