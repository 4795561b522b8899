"""T = mu + k * sigma (report Eq. 1, the DtMM system's rule).

The report fits it on held-out KLs: the DtMM back end's ``threshold_scores`` are the KLs of its
threshold-training clips, not the in-sample scores of all training clips (which would be biased low,
since most of them trained the baseline).
"""

from __future__ import annotations

import numpy as np

from stethoscope.decision.base import ThresholdRule, register_threshold


@register_threshold("mu-k-sigma")
class MuKSigmaThreshold(ThresholdRule):
    def __init__(self, k: float = 3.0, **params) -> None:
        super().__init__(k=float(k), **params)

    def compute(self, train_scores: np.ndarray) -> float:
        s = np.asarray(train_scores, dtype=np.float64)
        return float(s.mean() + self.params["k"] * s.std())  # population std (ddof 0), as DtMM uses
