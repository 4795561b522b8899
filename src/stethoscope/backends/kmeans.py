"""k-means back end (SPEC 5.1): the reference scorer of the dual-branch CNN that DS and DtMM replace.

Source clips are plentiful, so they are summarised by k-means centres; target clips are only ~10,
so each one is kept as its own centre and the target domain is not swamped by the source clusters.
Score = cosine distance to the nearest centre.

``domain_norm="median"`` (beyond SPEC 5.1, off by default) divides each domain's distance by that
domain's typical distance of a normal training clip before taking the minimum: the median distance
of source clips to the nearest centre fitted without them (two folds), and the median leave-one-out
nearest-neighbour distance among target clips. Ten target clips lie far apart, so without it every
target clip scores above the source clips and AUC-t and pAUC suffer (the report's domain-offset
table shows it); the rescaling uses training clips only, and the test clip's domain stays unknown.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans

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


@register_backend("kmeans")
class KMeansBackend(Backend):
    inputs = ("embedding", "views")

    def __init__(self, n_clusters: int = 16, n_init: int = 10, domain_norm: str = "none") -> None:
        if domain_norm not in ("none", "median"):
            raise ValueError(f"kmeans: domain_norm must be 'none' or 'median', not {domain_norm!r}")
        self.n_clusters = int(n_clusters)
        self.n_init = int(n_init)
        self.domain_norm = domain_norm
        self.centres: np.ndarray | None = None
        self.n_source_centres = 0
        self.scales = np.ones(2)  # (source, target) distance scales; 1 without domain_norm
        self.held_out: np.ndarray | None = None  # training clips scored as unseen clips

    def fit(self, data: FitData) -> KMeansBackend:
        z = clip_embeddings(data.x)
        domains = np.asarray(data.domains).astype(str)
        src, tgt = z[domains == "source"], z[domains == "target"]
        parts = []
        if len(src):
            parts.append(self._source_centres(src, data.seed))
        self.n_source_centres = len(parts[0]) if parts else 0
        parts.append(tgt)
        self.centres = np.concatenate(parts, axis=0)
        if len(self.centres) == 0:
            raise ValueError("kmeans: no training embeddings")
        # normal distances per domain as a new clip would see them: source clips to centres fitted
        # without them (two folds; in-sample distances run low), target clips leave-one-out
        if self.n_source_centres < len(src):
            d_src = np.empty(len(src))
            fold = np.random.default_rng(data.seed).permutation(len(src)) % 2 == 0
            for held in (fold, ~fold):
                d_src[held] = min_cosine_distance(
                    src[held], self._source_centres(src[~held], data.seed)
                )
        else:  # no source, or every source clip is its own centre
            d_src = _leave_one_out_distance(src)
        d_tgt = _leave_one_out_distance(tgt)
        if self.domain_norm == "median" and len(d_src) and len(d_tgt):
            self.scales = np.maximum([np.median(d_src), np.median(d_tgt)], 1e-6)
        # each training clip as a new clip of its domain would score, for the decision threshold
        self.held_out = np.concatenate([d_src / self.scales[0], d_tgt / self.scales[1]])
        return self

    def threshold_scores(self, data: FitData) -> np.ndarray:
        if self.held_out is None:
            raise RuntimeError("kmeans: not fitted")
        return self.held_out

    def _source_centres(self, src: np.ndarray, seed: int) -> np.ndarray:
        """k-means centres of source clips, or the clips themselves when there are too few."""
        # Never ask for more clusters than distinct source points (e.g. a section with 5 clips).
        k = min(self.n_clusters, len(np.unique(src.round(12), axis=0)))
        if k == len(src):
            return src
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=seed).fit(src)
        return l2_normalise(km.cluster_centers_)

    def score(self, x: BackendInput) -> np.ndarray:
        centres = fitted(self.centres, "kmeans")
        z = clip_embeddings(x)
        k = self.n_source_centres
        if self.domain_norm == "none" or k == 0 or k == len(centres):
            return min_cosine_distance(z, centres)
        return np.minimum(
            min_cosine_distance(z, centres[:k]) / self.scales[0],
            min_cosine_distance(z, centres[k:]) / self.scales[1],
        )

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        meta = {
            "n_clusters": self.n_clusters,
            "n_init": self.n_init,
            "n_source_centres": self.n_source_centres,
            "domain_norm": self.domain_norm,
        }
        arrays = {
            "centres": fitted(self.centres, "kmeans"),
            "scales": self.scales,
            "held_out": fitted(self.held_out, "kmeans"),
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> KMeansBackend:
        b = cls(
            n_clusters=meta["n_clusters"],
            n_init=meta.get("n_init", 10),
            domain_norm=meta.get("domain_norm", "none"),
        )
        b.centres = np.asarray(arrays["centres"], dtype=np.float64)
        if "scales" in arrays:
            b.scales = np.asarray(arrays["scales"], dtype=np.float64)
        b.n_source_centres = int(meta.get("n_source_centres", 0))
        b.held_out = np.asarray(arrays["held_out"], dtype=np.float64)
        return b


def _leave_one_out_distance(z: np.ndarray) -> np.ndarray:
    """Cosine distance of each clip to its nearest other clip (empty for fewer than two clips)."""
    if len(z) < 2:
        return np.empty(0)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    return 1.0 - sim.max(axis=1)
