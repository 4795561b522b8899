"""Cosine distance to the normal centre (SPEC 5.5, the ACAE system's scorer).

One centre per domain, because the ~10 target clips would barely move a pooled mean that ~990
source clips dominate; the min over centres lets a clip be judged by the domain it resembles.
The matching threshold is the minimum covering volume radius (``decision/mcv.py``).
"""

from __future__ import annotations

import numpy as np

from stethoscope.backends.base import (Backend, FitData, clip_embeddings, l2_normalise,
                                        min_cosine_distance, register_backend)


@register_backend("cosine-centre")
class CosineCentreBackend(Backend):
    name = "cosine-centre"

    def __init__(self, per_domain: bool = True) -> None:
        self.per_domain = bool(per_domain)
        self.centres: np.ndarray | None = None
        self.centre_domains: list[str] = []

    def fit(self, data: FitData) -> "CosineCentreBackend":
        z = clip_embeddings(data.x)
        if len(z) == 0:
            raise ValueError("cosine-centre: no training embeddings")
        domains = np.asarray(data.domains).astype(str)
        groups = sorted(set(domains)) if self.per_domain else ["all"]
        centres = []
        for g in groups:
            members = z if g == "all" else z[domains == g]
            centres.append(members.mean(axis=0))
        self.centres = l2_normalise(np.stack(centres))
        self.centre_domains = list(groups)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        if self.centres is None:
            raise RuntimeError("cosine-centre: not fitted")
        return min_cosine_distance(clip_embeddings(x), self.centres)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        return {"centres": self.centres}, {"per_domain": self.per_domain, "centre_domains": self.centre_domains}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> "CosineCentreBackend":
        b = cls(per_domain=meta.get("per_domain", True))
        b.centres = np.asarray(arrays["centres"], dtype=np.float64)
        b.centre_domains = list(meta.get("centre_domains", []))
        return b
