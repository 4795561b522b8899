"""Cosine distance to the normal centre (SPEC 5.5, the ACAE system's scorer).

One centre per domain, because the ~10 target clips would barely move a pooled mean that ~990
source clips dominate; the min over centres lets a clip be judged by the domain it resembles.
The matching threshold is the minimum covering volume radius (``decision/mcv.py``).

``per="class"`` (beyond the report) keeps one centre per auxiliary class instead: an embedding
trained with an angular-margin loss spreads a section's attribute classes apart on the sphere, so
the mean of several classes can lie between them, where confidently embedded normal clips are
*farther* from it than ambiguous anomalous ones.
"""

from __future__ import annotations

import numpy as np

from stethoscope.backends.base import (
    Backend,
    BackendInput,
    FitData,
    clip_embeddings,
    fitted,
    l2_normalise,
    min_cosine_distance,
    register_backend,
)

PER = ("domain", "class", "all")


@register_backend("cosine-centre")
class CosineCentreBackend(Backend):
    inputs = ("embedding", "views")

    def __init__(self, per_domain: bool = True, per: str | None = None) -> None:
        per = per or ("domain" if per_domain else "all")
        if per not in PER:
            raise ValueError(f"cosine-centre: per must be one of {PER}, got {per!r}")
        self.per = per
        self.centres: np.ndarray | None = None
        self.centre_domains: list[
            str
        ] = []  # the group of each centre (domain, class index or "all")

    def fit(self, data: FitData) -> CosineCentreBackend:
        z = clip_embeddings(data.x)
        if len(z) == 0:
            raise ValueError("cosine-centre: no training embeddings")
        if self.per == "class" and data.classes is not None:
            keys = np.asarray(data.classes).astype(str)
        elif self.per == "all":
            keys = np.full(len(z), "all")
        else:  # per domain, also the fallback when no classes are given
            keys = np.asarray(data.domains).astype(str)
        groups = sorted(set(keys))
        self.centres = l2_normalise(np.stack([z[keys == g].mean(axis=0) for g in groups]))
        self.centre_domains = list(groups)
        return self

    def score(self, x: BackendInput) -> np.ndarray:
        return min_cosine_distance(clip_embeddings(x), fitted(self.centres, "cosine-centre"))

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {"centres": fitted(self.centres, "cosine-centre")}
        return arrays, {"per": self.per, "centre_domains": self.centre_domains}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> CosineCentreBackend:
        b = cls(
            per_domain=meta.get("per_domain", True), per=meta.get("per")
        )  # per_domain: older models
        b.centres = np.asarray(arrays["centres"], dtype=np.float64)
        b.centre_domains = list(meta.get("centre_domains", []))
        return b
