"""Per-domain normalisation of any back end's score (SPEC 5.7, beyond the report).

Ten target clips lie far apart in any embedding space, so a back end fitted on both domains scores
every target clip above the source clips: the score mixes up "from the target domain" with
"anomalous" (the report's domain-offset table shows it). This wrapper fits the inner back end once
per domain, learns each domain's typical score of a *normal unseen* clip from held-out training
clips (k folds), and scores a clip by

    min over domains d of  s_d(x) / median_d            (method "median")
                       or  (s_d(x) - mean_d) / std_d    (method "zscore")

so both domains' normal clips land near one value and the test clip's domain stays unknown. Any
back end can be wrapped: a system asks for it with ``"domain_norm": "median"`` among its back-end
parameters (:func:`stethoscope.backends.factory.make_backend`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stethoscope.backends.base import BACKENDS, Backend, BackendInput, FitData, register_backend

METHODS = ("median", "zscore")
DOMAINS = ("source", "target")


def _subset(x: BackendInput, idx: np.ndarray) -> BackendInput:
    if isinstance(x, np.ndarray):
        return x[idx]
    return [x[i] for i in idx]


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [f for f in np.array_split(order, min(k, n)) if len(f)]


@register_backend("domain-norm")
class DomainNormalised(Backend):
    inputs = ("embedding", "views", "residual", "recon-error")

    def __init__(
        self,
        inner: str,
        inner_params: dict[str, Any] | None = None,
        method: str = "median",
        folds: int = 2,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"domain_norm must be one of {METHODS}, got {method!r}")
        self.inner_name = inner
        self.inner_params = dict(inner_params or {})
        self.method = method
        self.n_folds = max(2, int(folds))
        self.models: dict[str, Backend] = {}
        self.stats: dict[str, tuple[float, float]] = {}  # domain -> (location, scale)
        self._held_out: np.ndarray | None = None

    def _new(self) -> Backend:
        return BACKENDS.get(self.inner_name)(**self.inner_params)

    def _part(self, data: FitData, idx: np.ndarray) -> FitData:
        classes = None if data.classes is None else np.asarray(data.classes)[idx]
        return FitData(_subset(data.x, idx), np.asarray(data.domains)[idx], classes, data.seed)

    def fit(self, data: FitData) -> DomainNormalised:
        domains = np.asarray(data.domains).astype(str)
        raw = np.full((len(domains), len(DOMAINS)), np.nan)  # held-out raw score per domain model
        self.models, self.stats = {}, {}
        for j, dom in enumerate(DOMAINS):
            idx = np.flatnonzero(domains == dom)
            if len(idx) == 0:
                continue
            self.models[dom] = self._new().fit(self._part(data, idx))
            others = np.flatnonzero(domains != dom)
            if len(others):
                raw[others, j] = self.models[dom].score(_subset(data.x, others))
            if len(idx) == 1:
                continue
            for fold in _folds(len(idx), self.n_folds, data.seed):
                train = np.setdiff1d(np.arange(len(idx)), fold)
                model = self._new().fit(self._part(data, idx[train]))
                raw[idx[fold], j] = model.score(_subset(data.x, idx[fold]))
        for j, dom in enumerate(DOMAINS):
            if dom not in self.models:
                continue
            own = raw[domains == dom, j]
            own = own[np.isfinite(own)]
            self.stats[dom] = self._location_scale(own)
        if len(self.stats) < len(self.models):  # a one-clip domain borrows the other's scale
            donor = next(iter(self.stats.values()), (0.0, 1.0))
            for dom in self.models:
                self.stats.setdefault(dom, donor)
        self._held_out = np.nanmin(self._normalise(raw), axis=1)
        return self

    def _location_scale(self, scores: np.ndarray) -> tuple[float, float]:
        if scores.size == 0:
            return (0.0, 1.0)
        if self.method == "median":
            return (0.0, max(float(np.median(scores)), 1e-12))
        return (float(scores.mean()), max(float(scores.std()), 1e-12))

    def _normalise(self, raw: np.ndarray) -> np.ndarray:
        out = np.full(raw.shape, np.nan)
        for j, dom in enumerate(DOMAINS):
            if dom in self.stats:
                loc, scale = self.stats[dom]
                out[:, j] = (raw[:, j] - loc) / scale
        return out

    def score(self, x: BackendInput) -> np.ndarray:
        if not self.models:
            raise RuntimeError("domain-norm: not fitted")
        raw = np.full((len(x), len(DOMAINS)), np.nan)
        for j, dom in enumerate(DOMAINS):
            if dom in self.models:
                raw[:, j] = self.models[dom].score(x)
        return np.nanmin(self._normalise(raw), axis=1)

    def threshold_scores(self, data: FitData) -> np.ndarray:
        if self._held_out is None:
            raise RuntimeError("domain-norm: not fitted")
        return self._held_out

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        metas = {}
        for dom, model in self.models.items():
            a, m = model.get_state()
            arrays.update({f"{dom}.{k}": v for k, v in a.items()})
            metas[dom] = m
        if self._held_out is not None:
            arrays["held_out"] = self._held_out
        meta = {
            "inner": self.inner_name,
            "inner_params": self.inner_params,
            "method": self.method,
            "folds": self.n_folds,
            "models": metas,
            "stats": {d: list(s) for d, s in self.stats.items()},
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> DomainNormalised:
        b = cls(meta["inner"], meta["inner_params"], meta["method"], meta["folds"])
        inner_cls = BACKENDS.get(meta["inner"])
        for dom, m in meta["models"].items():
            sub = {k[len(dom) + 1 :]: v for k, v in arrays.items() if k.startswith(f"{dom}.")}
            b.models[dom] = inner_cls.from_state(sub, m)
        b.stats = {d: (float(s[0]), float(s[1])) for d, s in meta["stats"].items()}
        if "held_out" in arrays:
            b._held_out = np.asarray(arrays["held_out"], dtype=np.float64)
        return b
