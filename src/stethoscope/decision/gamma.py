"""Gamma threshold (SPEC 5.6): the official baselines' rule.

Anomaly scores of normal clips are positive and right-skewed, so a gamma fit (shape, loc, scale, as
``scipy.stats.gamma.fit`` gives them, like the official baseline) extrapolates the tail more
smoothly than the empirical percentile of a few hundred clips. Threshold = the fitted ``percentile``
(default 90).
"""

from __future__ import annotations

import warnings

import numpy as np

from stethoscope.decision.base import ThresholdRule, register_threshold


@register_threshold("gamma")
class GammaThreshold(ThresholdRule):
    def __init__(self, percentile: float = 90.0, **params) -> None:
        if not 0.0 < percentile < 100.0:
            raise ValueError("gamma: percentile must lie in (0, 100)")
        super().__init__(percentile=float(percentile), **params)
        self.gamma_params: tuple[float, float, float] | None = None

    def compute(self, train_scores: np.ndarray) -> float:
        from scipy import stats  # fitting only: deciding with a fitted threshold needs numpy

        s = np.asarray(train_scores, dtype=np.float64)
        q = self.params["percentile"] / 100.0
        # Degenerate inputs (one value, all equal): no distribution to fit, every score is the threshold.
        if s.size < 3 or np.ptp(s) <= 1e-12 * max(1.0, float(np.abs(s).max())):
            return float(np.percentile(s, 100.0 * q))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a, loc, scale = stats.gamma.fit(s)
                value = float(stats.gamma.ppf(q, a, loc=loc, scale=scale))
        except (ValueError, RuntimeError, FloatingPointError):
            value = float("nan")
        if not np.isfinite(value):
            # The fit can fail on odd samples (e.g. huge outliers); fall back to the empirical percentile.
            return float(np.percentile(s, 100.0 * q))
        self.gamma_params = (float(a), float(loc), float(scale))
        return value

    def get_state(self) -> dict:
        state = super().get_state()
        state["gamma_params"] = self.gamma_params
        return state
