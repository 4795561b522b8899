"""k-nearest-neighbour distance with local density normalisation (SPEC 5.7, beyond the report).

Per domain, the training embeddings form a memory bank. A clip's score against a bank is the cosine
distance to its nearest bank point n divided by n's own typical neighbour distance (the mean
distance from n to its ``k`` nearest other bank points):

    score(x) = d(x, n) / mean_{j in kNN(n)} d(n, j),   n = argmin_j d(x, z_j)

and the clip's score is the minimum over the source and target banks. Dividing by the local scale
puts a sparse region (ten target clips far apart) and a dense one (a thousand source clips) on one
footing, which is what the raw distance cannot do: with it every target normal scores like an
anomaly. A training point's exact copy scores 0. The target bank can be augmented (MemMixup, SMOTE;
see :mod:`stethoscope.backends.augment`).

The decision threshold is fitted on training clips scored as unseen clips: each one against its
own bank without itself (nor points made from it), and against the other bank as it stands.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stethoscope.backends.augment import augment_target
from stethoscope.backends.base import (
    Backend,
    BackendInput,
    FitData,
    clip_embeddings,
    register_backend,
)

DOMAINS = ("source", "target")
MIN_SCALE = 1e-6


def local_scales(bank: np.ndarray, k: int, origin: np.ndarray) -> np.ndarray:
    """(n,) mean cosine distance of each bank point to its k nearest points of other origins."""
    if len(bank) < 2:
        return np.full(len(bank), np.nan)
    dist = 1.0 - bank @ bank.T
    dist[origin[:, None] == origin[None, :]] = np.inf  # itself, and points made from it
    k = min(k, len(bank) - 1)
    nearest = np.partition(dist, k - 1, axis=1)[:, :k]
    nearest[~np.isfinite(nearest)] = np.nan
    with np.errstate(all="ignore"):
        return np.nanmean(nearest, axis=1)


@register_backend("knn-ldn")
class KNNLocalDensity(Backend):
    inputs = ("embedding", "views")

    def __init__(
        self,
        k: int = 5,
        ldn: bool = True,
        target_augment: str = "none",
        augment_k: int = 5,
        augment_lambda: float = 0.8,
        augment_per_clip: int = 5,
    ) -> None:
        if k < 1:
            raise ValueError("knn-ldn: k must be at least 1")
        self.k = int(k)
        self.ldn = bool(ldn)
        self.target_augment = target_augment
        self.augment: dict[str, Any] = {
            "k": int(augment_k),
            "lam": float(augment_lambda),
            "n_per_clip": int(augment_per_clip),
        }
        self.banks: dict[str, np.ndarray] = {}
        self.scales: dict[str, np.ndarray] = {}
        self.origins: dict[str, np.ndarray] = {}

    def fit(self, data: FitData) -> KNNLocalDensity:
        z = clip_embeddings(data.x)
        domains = np.asarray(data.domains).astype(str)
        self.banks, self.scales, self.origins = {}, {}, {}
        for dom in DOMAINS:
            idx = np.flatnonzero(domains == dom)
            if len(idx) == 0:
                continue
            bank, origin = z[idx], idx
            if dom == "target" and self.target_augment != "none":
                src = z[domains == "source"]
                bank = augment_target(
                    z[idx], src, self.target_augment, seed=data.seed, **self.augment
                )
                per = (len(bank) - len(idx)) // max(len(idx), 1)
                origin = np.concatenate([idx, np.repeat(idx, per)])[: len(bank)]
            self.banks[dom], self.origins[dom] = bank, origin
        if not self.banks:
            raise ValueError("knn-ldn: no training embeddings")
        for dom, bank in self.banks.items():
            self.scales[dom] = local_scales(bank, self.k, self.origins[dom])
        finite = np.concatenate([s[np.isfinite(s)] for s in self.scales.values()])
        fallback = float(np.median(finite)) if finite.size else 1.0
        for dom, s in self.scales.items():  # a one-point bank borrows the typical scale
            self.scales[dom] = np.maximum(np.where(np.isfinite(s), s, fallback), MIN_SCALE)
        return self

    def _bank_scores(
        self, z: np.ndarray, dom: str, exclude: np.ndarray | None = None
    ) -> np.ndarray:
        dist = 1.0 - z @ self.banks[dom].T
        if exclude is not None:  # (N,) training clip index of each row: hold it out
            dist[exclude[:, None] == self.origins[dom][None, :]] = np.inf
        nearest = np.argmin(dist, axis=1)
        d = np.maximum(dist[np.arange(len(z)), nearest], 0.0)
        return d / self.scales[dom][nearest] if self.ldn else d

    def score(self, x: BackendInput) -> np.ndarray:
        if not self.banks:
            raise RuntimeError("knn-ldn: not fitted")
        z = clip_embeddings(x)
        return np.min([self._bank_scores(z, dom) for dom in self.banks], axis=0)

    def threshold_scores(self, data: FitData) -> np.ndarray:
        z = clip_embeddings(data.x)
        ids = np.arange(len(z))
        scores = np.min([self._bank_scores(z, dom, exclude=ids) for dom in self.banks], axis=0)
        return np.where(np.isfinite(scores), scores, np.nan)  # a clip alone in every bank

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {}
        for dom in self.banks:
            arrays[f"bank_{dom}"] = self.banks[dom]
            arrays[f"scale_{dom}"] = self.scales[dom]
            arrays[f"origin_{dom}"] = self.origins[dom]
        meta = {
            "k": self.k,
            "ldn": self.ldn,
            "target_augment": self.target_augment,
            "augment": self.augment,
            "domains": list(self.banks),
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> KNNLocalDensity:
        aug = meta["augment"]
        b = cls(
            k=meta["k"],
            ldn=meta["ldn"],
            target_augment=meta["target_augment"],
            augment_k=aug["k"],
            augment_lambda=aug["lam"],
            augment_per_clip=aug["n_per_clip"],
        )
        for dom in meta["domains"]:
            b.banks[dom] = np.asarray(arrays[f"bank_{dom}"], dtype=np.float64)
            b.scales[dom] = np.asarray(arrays[f"scale_{dom}"], dtype=np.float64)
            b.origins[dom] = np.asarray(arrays[f"origin_{dom}"], dtype=np.int64)
        return b
