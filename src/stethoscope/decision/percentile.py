"""Empirical percentile threshold: the k-means and DensitySoftmax systems' rule (SPEC 1).

Distribution-free: a ``q`` (default 90) percent share of training clips is decided normal, whatever
shape the score distribution has (DS scores are bounded, so a gamma fit would not suit them).
"""

from __future__ import annotations

import numpy as np

from stethoscope.decision.base import ThresholdRule, register_threshold


@register_threshold("percentile")
class PercentileThreshold(ThresholdRule):
    def __init__(self, q: float = 90.0, **params) -> None:
        if not 0.0 <= q <= 100.0:
            raise ValueError("percentile: q must lie in [0, 100]")
        super().__init__(q=float(q), **params)

    def compute(self, train_scores: np.ndarray) -> float:
        return float(np.percentile(train_scores, self.params["q"]))
