"""Minimum covering volume threshold (SPEC 5.5; report 2.2, the ACAE system's rule).

Scores are cosine distances to the normal centre, so a threshold r is the radius of a sphere around
the centre (in cosine distance). MCV takes the smallest r that covers a ``coverage`` share of the
training clips: the smallest r with at least ceil(coverage * N) training scores <= r, i.e. the
ceil(coverage * N)-th smallest score (coverage 1.0 = the farthest normal clip, as in the report).
Exact order statistic, no interpolation, so the covered count is exactly what was asked for.
"""

from __future__ import annotations

import math

import numpy as np

from stethoscope.decision.base import ThresholdRule, register_threshold


def covered_count(coverage: float, n: int) -> int:
    """ceil(coverage * n), robust to binary round-off (0.9 * 100 must give 90, not 91), in [1, n]."""
    return min(n, max(1, math.ceil(round(coverage * n, 9))))


@register_threshold("mcv")
class MCVThreshold(ThresholdRule):
    def __init__(self, coverage: float = 1.0, **params) -> None:
        if not 0.0 < coverage <= 1.0:
            raise ValueError("mcv: coverage must lie in (0, 1]")
        super().__init__(coverage=float(coverage), **params)

    def compute(self, train_scores: np.ndarray) -> float:
        s = np.sort(np.asarray(train_scores, dtype=np.float64))
        return float(s[covered_count(self.params["coverage"], s.size) - 1])
