"""T = mu + k * sigma (report Eq. 1, the DtMM system's rule).

The report fits it on held-out KLs: the DtMM back end keeps the KLs of its threshold-training clips as
``threshold_scores``, and :func:`calibration_scores` hands those to the rule instead of the in-sample
scores of all training clips (which would be biased low, since most of them trained the baseline).
"""

from __future__ import annotations

import numpy as np

from stethoscope.decision.base import ThresholdRule, register_threshold


@register_threshold("mu-k-sigma")
class MuKSigmaThreshold(ThresholdRule):
    name = "mu-k-sigma"

    def __init__(self, k: float = 3.0, **params) -> None:
        super().__init__(k=float(k), **params)

    def compute(self, train_scores: np.ndarray) -> float:
        s = np.asarray(train_scores, dtype=np.float64)
        return float(s.mean() + self.params["k"] * s.std())  # population std (ddof 0), as DtMM uses


def calibration_scores(backend: object, train_scores: np.ndarray) -> np.ndarray:
    """Scores a threshold rule should be fitted on: the back end's held-out ``threshold_scores`` when it
    has them (DtMM), else the given training scores."""
    held_out = getattr(backend, "threshold_scores", None)
    if held_out is not None and len(held_out) > 0:
        return np.asarray(held_out, dtype=np.float64)
    return np.asarray(train_scores, dtype=np.float64)
