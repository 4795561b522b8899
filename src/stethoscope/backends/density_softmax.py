"""DensitySoftmax back end (SPEC 5.2; report 2.1.1; Bui & Liu, ICML 2024).

DensitySoftmax multiplies a classifier's logits by a normalised feature density p~(x) in [0, 1]
before the softmax: far from the training data the logits shrink and the softmax flattens, so low
confidence signals "unlike any known class". Here the classifier is built from the training
embeddings of one machine type and section (the front end's own head is not available to a back
end):

* classes i = auxiliary attribute classes of the section (``FitData.classes``), or the domains when
  no classes are given; class-conditional Gaussians N(mu_i, Sigma) with one tied covariance,
  Ledoit-Wolf shrunk because target classes have ~10 clips (pooled within-class residuals).
* l_i(x) = log N(x; mu_i, Sigma) = -d_i(x)^2 / 2 - log det(2 pi Sigma) / 2, d_i = Mahalanobis
  distance.
* L(x) = logsumexp_i l_i(x) - log C: the feature density, uniform class prior so the ~10-clip target
  classes weigh as much as source classes (empirical priors would call every target clip rare).
* p~(x) = min(1, exp((L(x) - L_max) / T)) with L_max = max over training clips of L. T = 1 is the
  paper's plain ratio p(x) / max p; in hundreds of dimensions that ratio underflows for almost every
  clip (log-density gaps of tens of nats), so by default T is calibrated on the training clips such
  that the median training clip gets p~ = ``median_density`` (0.5). Order is unchanged: p~ is a
  monotone power of the paper's ratio.
* logits: ``"cosine"`` (default) = scale * cos(x, mu_i), bounded so that p~ -> 0 really flattens the
  softmax; ``"gaussian"`` = l_i(x) (the Gaussian discriminant, i.e. -d_i^2/2 up to shared terms).

Scores (``variant``), higher = more anomalous:
* ``"msp"`` (default for now; the lead picks from benchmarks): 1 - max_i softmax(p~(x) * logits)_i.
  With a single class the softmax is constant, so the score falls back to 1 - p~(x).
* ``"neg-logsumexp"``: -logsumexp_i l_i(x), the pure density score.
* ``"min-mahalanobis"``: min_i d_i(x).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax
from sklearn.covariance import ledoit_wolf

from stethoscope.backends.base import (
    Backend,
    BackendInput,
    FitData,
    clip_embeddings,
    fitted,
    l2_normalise,
    register_backend,
)

VARIANTS = ("msp", "neg-logsumexp", "min-mahalanobis")
LOGITS = ("cosine", "gaussian")


@register_backend("density-softmax")
class DensitySoftmaxBackend(Backend):
    inputs = ("embedding", "views")

    def __init__(
        self,
        variant: str = "msp",
        logits: str = "cosine",
        scale: float = 16.0,
        median_density: float = 0.5,
        temperature: float | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"density-softmax: variant must be one of {VARIANTS}, got {variant!r}")
        if logits not in LOGITS:
            raise ValueError(f"density-softmax: logits must be one of {LOGITS}, got {logits!r}")
        if not 0.0 < median_density < 1.0:
            raise ValueError("density-softmax: median_density must lie in (0, 1)")
        self.variant = variant
        self.logits_kind = logits
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

    # ------------------------------------------------------------------ fitting
    def fit(self, data: FitData) -> DensitySoftmaxBackend:
        z = clip_embeddings(data.x)
        labels = np.asarray(
            data.classes if data.classes is not None else np.asarray(data.domains).astype(str)
        )
        uniq, idx = np.unique(labels, return_inverse=True)
        self.class_labels = [u.item() if hasattr(u, "item") else u for u in uniq]
        self.means = np.stack([z[idx == c].mean(axis=0) for c in range(len(uniq))])
        resid = z - self.means[idx]
        if len(z) > 1:
            cov, self.shrinkage = ledoit_wolf(resid, assume_centered=True)
        else:
            cov, self.shrinkage = np.eye(z.shape[1]) / z.shape[1], 1.0
        # Guard a zero-variance section (identical clips): a tiny isotropic floor keeps Sigma invertible.
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
        d2 = (
            (y * y).sum(1, keepdims=True)
            - 2.0 * y @ self._w_means.T
            + (self._w_means**2).sum(1)[None]
        )
        return np.maximum(d2, 0.0)

    def class_log_densities(self, z: np.ndarray) -> np.ndarray:
        """(N, C) l_i(x) = log N(x; mu_i, Sigma)."""
        dim = z.shape[1]
        return -0.5 * self.mahalanobis_sq(z) - 0.5 * (self.logdet + dim * np.log(2.0 * np.pi))

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """(N,) L(x) = log of the uniform mixture of class Gaussians."""
        return logsumexp(self.class_log_densities(z), axis=1) - np.log(
            len(fitted(self.means, "density-softmax"))
        )

    def density(self, x: np.ndarray) -> np.ndarray:
        """(N,) normalised density p~(x) in [0, 1] (1 = as dense as the densest training clip)."""
        z = clip_embeddings(x)
        return self._density(z)

    def _density(self, z: np.ndarray) -> np.ndarray:
        return np.minimum(
            1.0, np.exp((self.log_density(z) - self.log_density_max) / self.temperature)
        )

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, C) DensitySoftmax class probabilities softmax(p~(x) * logits(x))."""
        z = clip_embeddings(x)
        return softmax(self._density(z)[:, None] * self._logits(z), axis=1)

    def _logits(self, z: np.ndarray) -> np.ndarray:
        if self.logits_kind == "cosine":
            return self.scale * (z @ self._dirs.T)
        return -0.5 * self.mahalanobis_sq(z)

    # ---------------------------------------------------------------- scoring
    def score(self, x: BackendInput) -> np.ndarray:
        means = fitted(self.means, "density-softmax")
        z = clip_embeddings(x)
        if self.variant == "neg-logsumexp":
            return -logsumexp(self.class_log_densities(z), axis=1)
        if self.variant == "min-mahalanobis":
            return np.sqrt(self.mahalanobis_sq(z).min(axis=1))
        dens = self._density(z)
        if len(means) == 1:
            return 1.0 - dens
        return 1.0 - softmax(dens[:, None] * self._logits(z), axis=1).max(axis=1)

    # ------------------------------------------------------------------ state
    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {
            "means": fitted(self.means, "density-softmax"),
            "whitener": fitted(self.whitener, "density-softmax"),
        }
        meta = {
            "variant": self.variant,
            "logits": self.logits_kind,
            "scale": self.scale,
            "median_density": self.median_density,
            "fixed_temperature": self.fixed_temperature,
            "logdet": self.logdet,
            "log_density_max": self.log_density_max,
            "temperature": self.temperature,
            "shrinkage": float(self.shrinkage),
            "class_labels": self.class_labels,
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> DensitySoftmaxBackend:
        b = cls(
            variant=meta["variant"],
            logits=meta["logits"],
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
        b._cache()
        return b
