"""Progress inside long epochs: a CNN or ACAE epoch on a CPU takes minutes, a silent wait.

Trainers report ``progress(epochs_done, epochs, info)`` at the end of every epoch; with a
:class:`MidEpoch` they also report the fraction of the running epoch, at most every ``every``
seconds, so a bar or a log line moves while an epoch runs. Epoch-end calls are unchanged.
"""

from __future__ import annotations

import time
from typing import Callable

Progress = Callable[[float, int, dict], None]


class MidEpoch:
    """Throttled fractional-epoch reports; ``info`` is a callable so quiet steps build nothing."""

    def __init__(self, progress: Progress | None, epochs: int, steps: int, every: float = 20.0) -> None:
        self.progress, self.epochs, self.steps, self.every = progress, epochs, max(1, steps), every
        self._last = time.monotonic()

    def step(self, epoch: int, step: int, info: Callable[[], dict] | None = None) -> None:
        """After ``step`` (0-based) of ``epoch`` (0-based); reports only when ``every`` s have passed."""
        if self.progress is None or step + 1 >= self.steps:
            return
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        done = round(epoch + (step + 1) / self.steps, 2)
        self.progress(done, self.epochs, {"epoch": epoch + 1, **(info() if info else {})})

    def epoch_end(self) -> None:
        self._last = time.monotonic()
