"""``logsumexp`` and ``softmax`` in numpy, as ``scipy.special`` computes them.

Scoring a fitted back end needs numpy only (the ONNX runtime runs without scipy), so the score
paths use these; fitting may still use scipy and scikit-learn, imported where they are needed.
"""

from __future__ import annotations

import numpy as np


def logsumexp(a: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """log(sum(exp(a))) along ``axis``; the largest terms are taken out of the sum and added back
    through ``log1p``, as scipy does, so a sum dominated by one term keeps its precision."""
    a = np.asarray(a, dtype=np.float64)
    a_max = np.max(a, axis=axis, keepdims=True)
    is_max = a == a_max
    count = is_max.sum(axis=axis, keepdims=True)
    shift = np.where(np.isfinite(a_max), a_max, 0.0)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        rest = np.where(is_max, 0.0, np.exp(a - shift)).sum(axis=axis, keepdims=True) / count
        out = np.log1p(rest) + np.log(count) + a_max
    return out if keepdims else np.squeeze(out, axis=axis)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x) / sum(exp(x)) along ``axis``, shifted by the maximum."""
    x = np.asarray(x, dtype=np.float64)
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)
