"""DensitySoftmax back end (SPEC 5.2; report 2.1.1; Bui & Liu, ICML 2024).

Every reading shares the density part, fitted per machine type and section on training embeddings:

* classes i = the section's auxiliary (attribute) classes, ``FitData.classes`` (the domains when
  none are given); class-conditional Gaussians N(mu_i, Sigma) with one tied covariance, Ledoit-Wolf
  shrunk because target classes have ~10 clips; l_i(x) = log N(x; mu_i, Sigma);
* the feature density L(x) = logsumexp_i l_i(x) - log C (uniform class prior, so the ~10-clip target
  classes weigh as much as source classes), normalised on the training clips to
  p~(x) = min(1, exp((L(x) - L_max) / T)) with L_max the densest training clip. T = 1 is the paper's
  ratio p(x) / max p; in hundreds of dimensions that underflows for almost every clip, so T is
  calibrated so that the median training clip gets p~ = ``median_density`` (order unchanged).

The readings differ in the logits the softmax sees (``reading``):

* ``"report"`` (the report's own words): the class densities p(x|c_i) normalised by a softmax, i.e.
  softmax_i l_i(x); no classifier;
* ``"head"`` (Bui & Liu): the trained classification head's logits, for the sub-cluster AdaCos head
  the head's scale times the cosine to each class's best sub-cluster, restricted to the section's
  classes and scaled by p~(x) before the softmax; the front end hands them over beside the embedding
  (input ``"embedding-logits"``);
* ``"refit"`` (a classifier refitted per section): scale times the cosine to each class mean,
  scaled by p~(x).

Scores (``score``), higher = more anomalous, over the (scaled) logits z_i:
``"msp"`` 1 - max_i softmax(z)_i (a single class: 1 - p~(x)); ``"neg-logsumexp"`` -logsumexp_i z_i
(for the report's reading, minus the log-density); ``"min-mahalanobis"`` min_i d_i(x), the same in
every reading.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stethoscope.backends.base import (
    Backend,
    BackendInput,
    FitData,
    clip_embeddings,
    fitted,
    l2_normalise,
    register_backend,
)
from stethoscope.backends.special import logsumexp, softmax
from stethoscope.errors import ConfigError

READINGS = ("report", "head", "refit")
SCORES = ("msp", "neg-logsumexp", "min-mahalanobis")


@register_backend("density-softmax")
class DensitySoftmaxBackend(Backend):
    inputs = ("embedding", "views", "embedding-logits")

    def __init__(
        self,
        reading: str = "report",
        score: str = "msp",
        scale: float = 16.0,
        median_density: float = 0.5,
        temperature: float | None = None,
    ) -> None:
        if reading not in READINGS:
            raise ConfigError(
                f"density-softmax: reading must be one of {READINGS}, not {reading!r}"
            )
        if score not in SCORES:
            raise ConfigError(f"density-softmax: score must be one of {SCORES}, not {score!r}")
        if not 0.0 < median_density < 1.0:
            raise ConfigError("density-softmax: median_density must lie in (0, 1)")
        self.reading = reading
        self.score_kind = score
        self.scale = float(scale)
        self.median_density = float(median_density)
        self.fixed_temperature = None if temperature is None else float(temperature)
        self.means: np.ndarray | None = None  # (C, D) class means
        self.whitener: np.ndarray | None = None  # (D, D) W with W Sigma W^T = I
        self.logdet = 0.0  # log det Sigma
        self.log_density_max = 0.0  # L_max over training clips
        self.temperature = 1.0
        self.shrinkage = 0.0
        self.class_labels: list = []
        self.n_logits = 0  # logit columns beside the embedding ("embedding-logits" input)

    # ------------------------------------------------------------------ input
    def _split(self, x: BackendInput) -> tuple[np.ndarray, np.ndarray | None]:
        """(unit-length embeddings, head logits or None) of a batch of clips."""
        arr = np.asarray(x, dtype=np.float64)
        if self.n_logits:
            return clip_embeddings(arr[..., : -self.n_logits]), arr[:, -self.n_logits :]
        return clip_embeddings(arr), None

    # ------------------------------------------------------------------ fitting
    def fit(self, data: FitData) -> DensitySoftmaxBackend:
        from sklearn.covariance import ledoit_wolf  # fitting only (scoring needs numpy alone)

        labels = np.asarray(
            data.classes if data.classes is not None else np.asarray(data.domains).astype(str)
        )
        uniq, idx = np.unique(labels, return_inverse=True)
        arr = np.asarray(data.x, dtype=np.float64)
        self.n_logits = 0
        if self.reading == "head":
            if data.classes is None or arr.ndim != 2:
                raise ConfigError("density-softmax: the 'head' reading needs 'embedding-logits'")
            self.n_logits = len(uniq)
        z, _ = self._split(arr)
        self.class_labels = [u.item() if hasattr(u, "item") else u for u in uniq]
        self.means = np.stack([z[idx == c].mean(axis=0) for c in range(len(uniq))])
        resid = z - self.means[idx]
        if len(z) > 1:
            cov, self.shrinkage = ledoit_wolf(resid, assume_centered=True)
        else:
            cov, self.shrinkage = np.eye(z.shape[1]) / z.shape[1], 1.0
        # a zero-variance section (identical clips): a tiny isotropic floor keeps Sigma invertible
        cov = cov + np.eye(cov.shape[0]) * 1e-9 * max(np.trace(cov) / cov.shape[0], 1e-12)
        chol = np.linalg.cholesky(cov)
        self.whitener = np.linalg.inv(chol)
        self.logdet = float(2.0 * np.log(np.diag(chol)).sum())
        self._cache()
        log_dens = self.log_density(z)
        self.log_density_max = float(log_dens.max())
        if self.fixed_temperature is not None:
            self.temperature = self.fixed_temperature
        else:
            gap = self.log_density_max - float(np.median(log_dens))
            self.temperature = gap / -np.log(self.median_density) if gap > 1e-12 else 1.0
        return self

    def _cache(self) -> None:
        means = fitted(self.means, "density-softmax")
        self._w_means = means @ fitted(self.whitener, "density-softmax").T
        self._dirs = l2_normalise(means)

    # ------------------------------------------------------------ quantities
    def mahalanobis_sq(self, z: np.ndarray) -> np.ndarray:
        """(N, C) squared Mahalanobis distances to the class means under the tied covariance."""
        y = z @ fitted(self.whitener, "density-softmax").T
        w = self._w_means
        d2 = (y * y).sum(1, keepdims=True) - 2.0 * y @ w.T + (w**2).sum(1)[None]
        return np.maximum(d2, 0.0)

    def class_log_densities(self, z: np.ndarray) -> np.ndarray:
        """(N, C) l_i(x) = log N(x; mu_i, Sigma) of unit-length embeddings ``z``."""
        dim = z.shape[1]
        return -0.5 * self.mahalanobis_sq(z) - 0.5 * (self.logdet + dim * np.log(2.0 * np.pi))

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """(N,) L(x) = log of the uniform mixture of class Gaussians."""
        n_classes = len(fitted(self.means, "density-softmax"))
        return logsumexp(self.class_log_densities(z), axis=1) - np.log(n_classes)

    def density(self, x: BackendInput) -> np.ndarray:
        """(N,) normalised density p~(x) in [0, 1] (1 = as dense as the densest training clip)."""
        return self._density(self._split(x)[0])

    def _density(self, z: np.ndarray) -> np.ndarray:
        return np.minimum(
            1.0, np.exp((self.log_density(z) - self.log_density_max) / self.temperature)
        )

    def logits(self, x: BackendInput) -> np.ndarray:
        """(N, C) the logits the softmax sees (scaled by p~(x) except in the report's reading)."""
        z, head = self._split(x)
        if self.reading == "report":
            return self.class_log_densities(z)
        base = head if head is not None else self.scale * (z @ self._dirs.T)
        return self._density(z)[:, None] * base

    def probabilities(self, x: BackendInput) -> np.ndarray:
        """(N, C) class probabilities of this reading."""
        return softmax(self.logits(x), axis=1)

    # ---------------------------------------------------------------- scoring
    def score(self, x: BackendInput) -> np.ndarray:
        means = fitted(self.means, "density-softmax")
        if self.score_kind == "min-mahalanobis":
            return np.sqrt(self.mahalanobis_sq(self._split(x)[0]).min(axis=1))
        z = self.logits(x)
        if self.score_kind == "neg-logsumexp":
            return -logsumexp(z, axis=1)
        if len(means) == 1:  # one class: the softmax says nothing, the density does
            return 1.0 - self.density(x)
        return 1.0 - softmax(z, axis=1).max(axis=1)

    # ------------------------------------------------------------------ state
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {
            "means": fitted(self.means, "density-softmax"),
            "whitener": fitted(self.whitener, "density-softmax"),
        }
        meta = {
            "reading": self.reading,
            "score": self.score_kind,
            "scale": self.scale,
            "median_density": self.median_density,
            "fixed_temperature": self.fixed_temperature,
            "logdet": self.logdet,
            "log_density_max": self.log_density_max,
            "temperature": self.temperature,
            "shrinkage": float(self.shrinkage),
            "class_labels": self.class_labels,
            "n_logits": self.n_logits,
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> DensitySoftmaxBackend:
        b = cls(
            reading=meta["reading"],
            score=meta["score"],
            scale=meta["scale"],
            median_density=meta["median_density"],
            temperature=meta.get("fixed_temperature"),
        )
        b.means = np.asarray(arrays["means"], dtype=np.float64)
        b.whitener = np.asarray(arrays["whitener"], dtype=np.float64)
        b.logdet = float(meta["logdet"])
        b.log_density_max = float(meta["log_density_max"])
        b.temperature = float(meta["temperature"])
        b.shrinkage = float(meta.get("shrinkage", 0.0))
        b.class_labels = list(meta.get("class_labels", []))
        b.n_logits = int(meta.get("n_logits", 0))
        b._cache()
        return b
