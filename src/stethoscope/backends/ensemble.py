"""Ensembles of front-end seeds: one back end per member, anomaly scores averaged (Wilkinghoff).

An ensemble front end hands over the members' length-normalised embeddings side by side, each
scaled by 1/sqrt(N); this wrapper splits them again, fits one back end per member and averages the
members' scores (and, for back ends with their own threshold set, their threshold scores).
"""

from __future__ import annotations

import numpy as np

from stethoscope.backends.base import BACKENDS, Backend, FitData, register_backend


@register_backend("ensemble")
class EnsembleBackend(Backend):
    name = "ensemble"

    def __init__(self, members: list[Backend]) -> None:
        if not members:
            raise ValueError("ensemble: need at least one member back end")
        self.members = members

    def _split(self, x) -> list:
        n = len(self.members)
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] % n:
            raise ValueError(f"ensemble: embedding width {x.shape[-1]} is not a multiple of {n}")
        return [part * np.sqrt(n) for part in np.split(x, n, axis=-1)]

    def fit(self, data: FitData) -> "EnsembleBackend":
        for member, part in zip(self.members, self._split(data.x)):
            member.fit(FitData(part, data.domains, data.classes, data.seed))
        own = [getattr(m, "threshold_scores", None) for m in self.members]
        if all(o is not None and len(o) for o in own):
            self.threshold_scores = np.mean([np.asarray(o, np.float64) for o in own], axis=0)
        return self

    def score(self, x) -> np.ndarray:
        return np.mean([m.score(p) for m, p in zip(self.members, self._split(x))], axis=0)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays: dict[str, np.ndarray] = {}
        metas = []
        for k, m in enumerate(self.members):
            a, meta = m.get_state()
            arrays.update({f"m{k}.{name}": v for name, v in a.items()})
            metas.append({"backend": m.name, "state": meta})
        if getattr(self, "threshold_scores", None) is not None:
            arrays["threshold_scores"] = np.asarray(self.threshold_scores)
        return arrays, {"members": metas}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> "EnsembleBackend":
        members = []
        for k, m in enumerate(meta["members"]):
            prefix = f"m{k}."
            sub = {name[len(prefix):]: v for name, v in arrays.items() if name.startswith(prefix)}
            members.append(BACKENDS.get(m["backend"]).from_state(sub, m["state"]))
        obj = cls(members)
        if "threshold_scores" in arrays:
            obj.threshold_scores = arrays["threshold_scores"]
        return obj
