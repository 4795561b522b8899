"""k-means back end (SPEC 5.1): the reference scorer of the dual-branch CNN that DS and DtMM replace.

Source clips are plentiful, so they are summarised by k-means centres; target clips are only ~10,
so each one is kept as its own centre and the target domain is not swamped by the source clusters.
Score = cosine distance to the nearest centre.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans

from stethoscope.backends.base import (Backend, FitData, clip_embeddings, l2_normalise,
                                        min_cosine_distance, register_backend)


@register_backend("kmeans")
class KMeansBackend(Backend):
    name = "kmeans"

    def __init__(self, n_clusters: int = 16, n_init: int = 10) -> None:
        self.n_clusters = int(n_clusters)
        self.n_init = int(n_init)
        self.centres: np.ndarray | None = None
        self.n_source_centres = 0

    def fit(self, data: FitData) -> "KMeansBackend":
        z = clip_embeddings(data.x)
        domains = np.asarray(data.domains).astype(str)
        src, tgt = z[domains == "source"], z[domains == "target"]
        parts = []
        if len(src):
            # Never ask for more clusters than distinct source points (e.g. a section with 5 clips).
            k = min(self.n_clusters, len(np.unique(src.round(12), axis=0)))
            if k == len(src):
                parts.append(src)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    km = KMeans(n_clusters=k, n_init=self.n_init, random_state=data.seed).fit(src)
                parts.append(l2_normalise(km.cluster_centers_))
        self.n_source_centres = len(parts[0]) if parts else 0
        parts.append(tgt)
        self.centres = np.concatenate(parts, axis=0)
        if len(self.centres) == 0:
            raise ValueError("kmeans: no training embeddings")
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        if self.centres is None:
            raise RuntimeError("kmeans: not fitted")
        return min_cosine_distance(clip_embeddings(x), self.centres)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        meta = {"n_clusters": self.n_clusters, "n_init": self.n_init, "n_source_centres": self.n_source_centres}
        return {"centres": self.centres}, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> "KMeansBackend":
        b = cls(n_clusters=meta["n_clusters"], n_init=meta.get("n_init", 10))
        b.centres = np.asarray(arrays["centres"], dtype=np.float64)
        b.n_source_centres = int(meta.get("n_source_centres", 0))
        return b
