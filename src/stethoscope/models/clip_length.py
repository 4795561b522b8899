"""The one input length of the networks that need one (dual-branch CNN, ACAE), and windows.

The length is the median length of the training clips, capped at :data:`MAX_INPUT_SECONDS` (DCASE
clips run 6 to 16 s): one stray long recording must not set it, or every clip would be tiled to
that length (a 10-minute clip among 2-second ones made a 6.6 GB training tensor). In training a
shorter clip is tiled (or padded) up to the length and a longer one cropped to its first window;
when a clip longer than the length is embedded or scored, it is cut into evenly spaced windows
(:func:`stethoscope.dsp.windows.window_starts`) whose outputs are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stethoscope.dsp.windows import window_starts

__all__ = ["MAX_INPUT_SECONDS", "typical_length", "window_starts"]

MAX_INPUT_SECONDS = 16.0


def typical_length(
    waves: Sequence[np.ndarray], sample_rate: int, cap_seconds: float = MAX_INPUT_SECONDS
) -> int:
    """Median training clip length in samples, at most ``cap_seconds``."""
    if not waves:
        raise ValueError("no clips to take a length from")
    median = int(np.median([np.asarray(w).shape[-1] for w in waves]))
    return max(1, min(median, int(round(cap_seconds * sample_rate))))
