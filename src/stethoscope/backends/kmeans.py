"""k-means back end (SPEC 5.1): the reference scorer of the dual-branch CNN that DS and DtMM replace.

Source clips are plentiful, so they are summarised by k-means centres; target clips are only ~10,
so each one is kept as its own centre and the target domain is not swamped by the source clusters.
Score = cosine distance to the nearest centre, over all centres.

The decision threshold is fitted on the training clips scored by that same rule as unseen clips:
a source clip against the centres of k-means fitted without it (two folds) and every target
clip, a target clip against the source centres and the other target clips. (Per-domain scaling of
the score is a wrapper any back end can have: :mod:`stethoscope.backends.domain_norm`.)
"""

from __future__ import annotations

import warnings

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


@register_backend("kmeans")
class KMeansBackend(Backend):
    inputs = ("embedding", "views")

    def __init__(self, n_clusters: int = 16, n_init: int = 10) -> None:
        self.n_clusters = int(n_clusters)
        self.n_init = int(n_init)
        self.centres: np.ndarray | None = None
        self.n_source_centres = 0
        self.held_out: np.ndarray | None = None  # training clips scored as unseen clips

    def fit(self, data: FitData) -> KMeansBackend:
        z = clip_embeddings(data.x)
        domains = np.asarray(data.domains).astype(str)
        is_src = domains == "source"
        src, tgt = z[is_src], z[~is_src]
        src_centres = (
            self._source_centres(src, data.seed) if len(src) else np.empty((0, z.shape[1]))
        )
        self.n_source_centres = len(src_centres)
        self.centres = np.concatenate([src_centres, tgt], axis=0)
        if len(self.centres) == 0:
            raise ValueError("kmeans: no training embeddings")
        held = np.full(len(z), np.nan)
        if len(src):
            d_src = np.empty(len(src))
            if self.n_source_centres < len(src):
                fold = np.random.default_rng(data.seed).permutation(len(src)) % 2 == 0
                for part in (fold, ~fold):
                    d_src[part] = _min_distance(
                        src[part], self._source_centres(src[~part], data.seed)
                    )
            else:  # every source clip is its own centre: leave it out
                d_src = _leave_one_out_distance(src)
            held[is_src] = np.fmin(d_src, _min_distance(src, tgt))
        if len(tgt):
            held[~is_src] = np.fmin(_leave_one_out_distance(tgt), _min_distance(tgt, src_centres))
        held[~np.isfinite(held)] = np.nan  # a clip alone in its section: nothing to hold out
        self.held_out = held
        return self

    def threshold_scores(self, data: FitData) -> np.ndarray:
        held = fitted(self.held_out, "kmeans")
        return held if np.isfinite(held).any() else self.score(data.x)

    def _source_centres(self, src: np.ndarray, seed: int) -> np.ndarray:
        """k-means centres of source clips, or the clips themselves when there are too few."""
        from sklearn.cluster import KMeans  # fitting only (scoring needs numpy alone)

        # Never ask for more clusters than distinct source points (e.g. a section with 5 clips).
        k = min(self.n_clusters, len(np.unique(src.round(12), axis=0)))
        if k == len(src):
            return src
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=seed).fit(src)
        return l2_normalise(km.cluster_centers_)

    def score(self, x: BackendInput) -> np.ndarray:
        return min_cosine_distance(clip_embeddings(x), fitted(self.centres, "kmeans"))

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        meta = {
            "n_clusters": self.n_clusters,
            "n_init": self.n_init,
            "n_source_centres": self.n_source_centres,
        }
        arrays = {
            "centres": fitted(self.centres, "kmeans"),
            "held_out": fitted(self.held_out, "kmeans"),
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> KMeansBackend:
        b = cls(n_clusters=meta["n_clusters"], n_init=meta.get("n_init", 10))
        b.centres = np.asarray(arrays["centres"], dtype=np.float64)
        b.n_source_centres = int(meta.get("n_source_centres", 0))
        b.held_out = np.asarray(arrays["held_out"], dtype=np.float64)
        return b


def _min_distance(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N,) min cosine distance to ``centres``; +inf with no centre (the other term decides)."""
    if len(centres) == 0:
        return np.full(len(z), np.inf)
    return min_cosine_distance(z, centres)


def _leave_one_out_distance(z: np.ndarray) -> np.ndarray:
    """Cosine distance of each clip to its nearest other clip (+inf for a clip alone)."""
    if len(z) < 2:
        return np.full(len(z), np.inf)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    return 1.0 - sim.max(axis=1)
