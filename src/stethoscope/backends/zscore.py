"""z-scored distance to the training mean: the simplest sensible scorer, a floor for the others.

Per domain, each embedding dimension is standardised by the training clips' mean and standard
deviation; the score is the root-mean-square z over dimensions, the minimum over domains.
"""

from __future__ import annotations

import numpy as np

from stethoscope.backends.base import Backend, BackendInput, FitData, fitted, register_backend


@register_backend("zscore")
class ZScoreDistance(Backend):
    inputs = ("embedding",)

    def __init__(self, min_std: float = 1e-3) -> None:
        self.min_std = float(min_std)
        self.means: np.ndarray | None = None  # (n_domains, D)
        self.stds: np.ndarray | None = None
        self.domains: list[str] = []

    def fit(self, data: FitData) -> ZScoreDistance:
        x = np.asarray(data.x, dtype=np.float64)
        doms = np.asarray(data.domains)
        means, stds, names = [], [], []
        for dom in ("source", "target"):
            sel = x[doms == dom]
            if len(sel) == 0:
                continue
            names.append(dom)
            means.append(sel.mean(axis=0))
            # few target clips: pool the spread with the whole section's
            std = sel.std(axis=0) if len(sel) >= 10 else x.std(axis=0)
            stds.append(np.maximum(std, self.min_std))
        self.means, self.stds, self.domains = np.stack(means), np.stack(stds), names
        return self

    def score(self, x: BackendInput) -> np.ndarray:
        means, stds = fitted(self.means, "zscore"), fitted(self.stds, "zscore")
        arr = np.asarray(x, dtype=np.float64)
        z = (arr[:, None, :] - means[None]) / stds[None]
        return np.sqrt((z**2).mean(axis=2)).min(axis=1)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        return (
            {"means": fitted(self.means, "zscore"), "stds": fitted(self.stds, "zscore")},
            {"min_std": self.min_std, "domains": self.domains},
        )

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> ZScoreDistance:
        obj = cls(min_std=meta["min_std"])
        obj.means, obj.stds, obj.domains = arrays["means"], arrays["stds"], list(meta["domains"])
        return obj
