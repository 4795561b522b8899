"""Ensembles of front-end seeds: one back end per member, anomaly scores averaged (Wilkinghoff).

An ensemble front end hands over the members' length-normalised embeddings side by side, each
scaled by 1/sqrt(N); this wrapper splits them again, fits one back end per member and averages the
members' scores, and their threshold scores likewise.
"""

from __future__ import annotations

import numpy as np

from stethoscope.backends.base import BACKENDS, Backend, BackendInput, FitData, register_backend


@register_backend("ensemble")
class EnsembleBackend(Backend):
    inputs = ("embedding", "views")

    def __init__(self, members: list[Backend]) -> None:
        if not members:
            raise ValueError("ensemble: need at least one member back end")
        self.members = members

    def _split(self, x: BackendInput) -> list[np.ndarray]:
        n = len(self.members)
        arr = np.asarray(x, dtype=np.float64)
        if arr.shape[-1] % n:
            raise ValueError(f"ensemble: embedding width {arr.shape[-1]} is not a multiple of {n}")
        return [part * np.sqrt(n) for part in np.split(arr, n, axis=-1)]

    def _parts(self, data: FitData) -> list[FitData]:
        return [
            FitData(part, data.domains, data.classes, data.seed) for part in self._split(data.x)
        ]

    def fit(self, data: FitData) -> EnsembleBackend:
        for member, part in zip(self.members, self._parts(data)):
            member.fit(part)
        return self

    def score(self, x: BackendInput) -> np.ndarray:
        return np.mean([m.score(p) for m, p in zip(self.members, self._split(x))], axis=0)

    def threshold_scores(self, data: FitData) -> np.ndarray:
        parts = self._parts(data)
        return np.mean([m.threshold_scores(p) for m, p in zip(self.members, parts)], axis=0)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays: dict[str, np.ndarray] = {}
        metas = []
        for k, m in enumerate(self.members):
            a, meta = m.get_state()
            arrays.update({f"m{k}.{name}": v for name, v in a.items()})
            metas.append({"backend": m.name, "state": meta})
        return arrays, {"members": metas}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> EnsembleBackend:
        members = []
        for k, m in enumerate(meta["members"]):
            prefix = f"m{k}."
            sub = {name[len(prefix) :]: v for name, v in arrays.items() if name.startswith(prefix)}
            members.append(BACKENDS.get(m["backend"]).from_state(sub, m["state"]))
        return cls(members)
