"""DtMM back end (SPEC 5.3; report 2.1.2): a baseline Dirichlet-process mixture that each clip evolves.

Fit, per machine type and section, on training clips only:

1. Views of every clip are length-normalised and reduced by a whitening PCA fitted on all training
   views (``n_pca`` dims, fewer when there are few vectors). Whitening makes ``reg_covar``
   unit-free; every KL below is affine invariant, so it does not change the divergences themselves.
   PCA alone is blind to a clip that leaves the training subspace (its projection can land inside
   the mixture's support); ``residual=True`` (beyond the report, off by default) appends the
   standardised norm of the PCA reconstruction residual as one more dimension so such clips shift a
   mean.
2. Clips are split into a model-training and a threshold-training set (``train_ratio``, default
   0.7), stratified by domain so that the ~10 target clips land in both sets.
3. Baseline: ``BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_process")`` with
   up to ``max_components`` components on all views of the model-training clips. Covariance
   ``"full"`` by default (16 dims x 10 components is cheap and models correlated embedding dims);
   ``"diag"`` is available for tiny sections. Components with weight < ``min_weight`` are dropped
   once, here, and the remaining ones keep their fitted order for every later evolution.

Evolution (MAP adaptation with the order fixed), from a prior mixture (baseline, or the previous
state in a stream), with responsibilities r_nk of the clip's views Y under the current mixture:

* means: Gaussian random-walk prior mu'_k ~ N(mu_k, Sigma_k / tau) (tau = 1 / ``random_walk_var``,
  the walk's variance relative to the component covariance), so mu'_k = (tau mu_k + sum_n r_nk y_n)
  / (tau + N_k);
* weights: Dirichlet prior centred on the prior weights, Dir(alpha w + 1), whose MAP is
  w'_k proportional to alpha w_k + N_k. alpha is a pseudo-count against the clip's V views (default
  100): a small alpha lets the KL(w'||w) term dominate, and since a ~10-clip target domain sits in
  low-weight components, every target clip would then look anomalous;
* covariances: kept (``cov_update="fixed"``, default: a clip has only a handful of views), or the
  normal-inverse-Wishart MAP Sigma'_k = (nu Sigma_k + sum_n r_nk (y_n - mu'_k)(y_n - mu'_k)^T
  + tau (mu'_k - mu_k)(mu'_k - mu_k)^T) / (nu + N_k) (``cov_update="map"``).

``n_iter`` > 1 repeats the step with responsibilities from the evolved mixture (prior unchanged).
Score = matched-component KL from the evolved mixture to the baseline (``mixture_kl``). Threshold:
the m threshold-training clips' KLs (``held_out``, NaN for the model-training clips: the back end's
``threshold_scores``) give
T = mean + k * std (population std),
exposed as ``threshold``; when the split would leave fewer than 2 held-out or 5 model clips, the
baseline uses all clips and the threshold their in-sample KLs (``threshold_in_sample``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stethoscope.backends.base import (
    Backend,
    BackendInput,
    FitData,
    fitted,
    l2_normalise,
    register_backend,
)
from stethoscope.backends.mixture_kl import mixture_kl
from stethoscope.backends.special import logsumexp

MIN_MODEL_CLIPS = 5


@dataclass
class Mixture:
    """A Gaussian mixture as plain arrays; ``covs`` is (K, d, d) full or (K, d) diagonal."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    @property
    def diag(self) -> bool:
        return self.covs.ndim == 2

    def component_log_pdf(self, y: np.ndarray) -> np.ndarray:
        """(n, K) log N(y_n; mu_k, Sigma_k)."""
        d = y.shape[1]
        diff = y[:, None, :] - self.means[None]
        if self.diag:
            maha = (diff**2 / self.covs[None]).sum(-1)
            logdet = np.log(self.covs).sum(-1)
        else:
            chol = np.linalg.cholesky(self.covs)
            sol = np.linalg.solve(chol[None], diff[..., None])[..., 0]
            maha = (sol**2).sum(-1)
            logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
        return -0.5 * (maha + logdet[None] + d * np.log(2.0 * np.pi))

    def responsibilities(self, y: np.ndarray) -> np.ndarray:
        log_joint = self.component_log_pdf(y) + np.log(self.weights)[None]
        return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))

    def blend(self, other: Mixture, keep: float) -> Mixture:
        """keep * self + (1 - keep) * other, parameter-wise (the stream's forgetting step)."""
        if keep >= 1.0:
            return self
        mix = lambda a, b: keep * a + (1.0 - keep) * b  # noqa: E731
        w = mix(self.weights, other.weights)
        return Mixture(w / w.sum(), mix(self.means, other.means), mix(self.covs, other.covs))


def clip_views(x: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    """Clips as a list of (V_i, D) view stacks; (N, D) input means one view per clip."""
    if isinstance(x, np.ndarray) and x.ndim == 3:
        return [v for v in np.asarray(x, dtype=np.float64)]
    if isinstance(x, np.ndarray) and x.ndim == 2:
        return [row[None] for row in np.asarray(x, dtype=np.float64)]
    return [np.atleast_2d(np.asarray(v, dtype=np.float64)) for v in x]


def stratified_split(
    domains: np.ndarray, train_ratio: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(model, threshold) clip indices; every domain with >= 2 clips puts at least one in each set."""
    rng = np.random.default_rng(seed)
    domains = np.asarray(domains).astype(str)
    model: list[int] = []
    thr: list[int] = []
    for dom in sorted(set(domains)):
        idx = rng.permutation(np.flatnonzero(domains == dom))
        n = len(idx)
        n_thr = min(max(int(round((1.0 - train_ratio) * n)), 1), n - 1) if n >= 2 else 0
        thr.extend(idx[:n_thr])
        model.extend(idx[n_thr:])
    return np.sort(np.array(model, dtype=np.int64)), np.sort(np.array(thr, dtype=np.int64))


@register_backend("dtmm")
class DtMMBackend(Backend):
    inputs = ("views", "embedding")

    def __init__(
        self,
        n_pca: int = 16,
        train_ratio: float = 0.7,
        max_components: int = 10,
        covariance_type: str = "full",
        min_weight: float = 1e-3,
        reg_covar: float = 1e-4,
        random_walk_var: float = 1.0,
        alpha: float = 100.0,
        cov_update: str = "fixed",
        nu: float = 10.0,
        n_iter: int = 1,
        k: float = 3.0,
        max_iter: int = 500,
        residual: bool = False,
    ) -> None:
        if covariance_type not in ("full", "diag"):
            raise ValueError("dtmm: covariance_type must be 'full' or 'diag'")
        if cov_update not in ("fixed", "map"):
            raise ValueError("dtmm: cov_update must be 'fixed' or 'map'")
        if not 0.0 < train_ratio <= 1.0 or random_walk_var <= 0 or alpha < 0 or nu < 0:
            raise ValueError(
                "dtmm: need 0 < train_ratio <= 1, random_walk_var > 0, alpha >= 0, nu >= 0"
            )
        self.params: dict[str, Any] = dict(
            n_pca=int(n_pca),
            train_ratio=float(train_ratio),
            max_components=int(max_components),
            covariance_type=covariance_type,
            min_weight=float(min_weight),
            reg_covar=float(reg_covar),
            random_walk_var=float(random_walk_var),
            alpha=float(alpha),
            cov_update=cov_update,
            nu=float(nu),
            n_iter=int(n_iter),
            k=float(k),
            max_iter=int(max_iter),
            residual=bool(residual),
        )
        self.tau = 1.0 / float(random_walk_var)
        self.pca_mean = np.zeros(0)
        self.pca_components = np.zeros((0, 0))
        self.pca_scale = np.zeros(0)
        self.resid_stats = np.array([0.0, 1.0])  # mean, std of the residual norm (residual=True)
        self.baseline: Mixture | None = None
        self.held_out: np.ndarray | None = None
        self.threshold: float | None = None
        self.threshold_in_sample = False

    # ---------------------------------------------------------------- fitting
    def fit(self, data: FitData) -> DtMMBackend:
        # fitting only: scoring a fitted back end needs numpy alone
        from sklearn.decomposition import PCA
        from sklearn.mixture import BayesianGaussianMixture

        p = self.params
        clips = [l2_normalise(v) for v in clip_views(data.x)]
        if not clips:
            raise ValueError("dtmm: no training clips")
        all_views = np.concatenate(clips, axis=0)
        n_dims = max(1, min(p["n_pca"], all_views.shape[0] - 1, all_views.shape[1]))
        pca = PCA(n_components=n_dims, svd_solver="full").fit(all_views)
        self.pca_mean = pca.mean_
        self.pca_components = pca.components_
        # Floors keep a few-clip section from whitening round-off into huge coordinates (unit-length
        # inputs: 1e-3 is far below any real spread).
        self.pca_scale = np.sqrt(np.maximum(pca.explained_variance_, 1e-6))
        if p["residual"]:
            norms = self._residual_norm(all_views)
            self.resid_stats = np.array([norms.mean(), max(norms.std(), 1e-3)])

        model_idx, thr_idx = stratified_split(data.domains, p["train_ratio"], data.seed)
        # Too few clips to hold any out: baseline on all of them, threshold from in-sample KLs.
        self.threshold_in_sample = len(thr_idx) < 2 or len(model_idx) < MIN_MODEL_CLIPS
        if self.threshold_in_sample:
            model_idx = thr_idx = np.arange(len(clips))
        y_model = self.project(np.concatenate([clips[i] for i in model_idx], axis=0))
        n_comp = max(1, min(p["max_components"], len(y_model)))
        bgm = BayesianGaussianMixture(
            n_components=n_comp,
            covariance_type=p["covariance_type"],
            weight_concentration_prior_type="dirichlet_process",
            reg_covar=p["reg_covar"],
            max_iter=p["max_iter"],
            random_state=data.seed,
        ).fit(y_model)
        keep = bgm.weights_ >= p["min_weight"]
        if not keep.any():
            keep = bgm.weights_ == bgm.weights_.max()
        w = bgm.weights_[keep]
        self.baseline = Mixture(w / w.sum(), bgm.means_[keep].copy(), bgm.covariances_[keep].copy())

        kls = np.array([self._kl_projected(self.project(clips[i])) for i in thr_idx])
        self.held_out = np.full(len(clips), np.nan)  # NaN: clips the baseline was fitted on
        self.held_out[thr_idx] = kls
        self.threshold = float(kls.mean() + p["k"] * kls.std())
        return self

    # -------------------------------------------------------------- evolution
    def project(self, views: np.ndarray) -> np.ndarray:
        """(V, D) raw views -> (V, d) whitened PCA vectors (views are length-normalised first)."""
        z = l2_normalise(np.atleast_2d(views))
        y = (z - self.pca_mean) @ self.pca_components.T / self.pca_scale
        if not self.params["residual"]:
            return y
        r = (self._residual_norm(z) - self.resid_stats[0]) / self.resid_stats[1]
        return np.concatenate([y, r[:, None]], axis=1)

    def _residual_norm(self, z: np.ndarray) -> np.ndarray:
        c = z - self.pca_mean
        return np.linalg.norm(c - (c @ self.pca_components.T) @ self.pca_components, axis=1)

    def evolve(self, views: np.ndarray, prior: Mixture | None = None) -> Mixture:
        """Evolve ``prior`` (default: the baseline) with one clip's (V, D) raw view embeddings."""
        if self.baseline is None:
            raise RuntimeError("dtmm: not fitted")
        return self._evolve_projected(
            self.project(views), self.baseline if prior is None else prior
        )

    def _evolve_projected(self, y: np.ndarray, prior: Mixture) -> Mixture:
        p, tau = self.params, self.tau
        cur = prior
        for _ in range(max(1, p["n_iter"])):
            r = cur.responsibilities(y)
            nk = r.sum(axis=0)
            means = (tau * prior.means + r.T @ y) / (tau + nk)[:, None]
            w = p["alpha"] * prior.weights + nk
            covs = prior.covs
            if p["cov_update"] == "map":
                covs = self._map_covs(y, r, nk, means, prior)
            cur = Mixture(w / w.sum(), means, covs)
        return cur

    def _map_covs(
        self, y: np.ndarray, r: np.ndarray, nk: np.ndarray, means: np.ndarray, prior: Mixture
    ) -> np.ndarray:
        nu, tau, reg = self.params["nu"], self.tau, self.params["reg_covar"]
        diff = y[:, None, :] - means[None]  # (n, K, d)
        shift = means - prior.means  # (K, d)
        denom = nu + nk
        if prior.diag:
            scatter = (r[..., None] * diff**2).sum(0) + tau * shift**2
            return (nu * prior.covs + scatter) / denom[:, None] + reg
        scatter = np.einsum("nk,nki,nkj->kij", r, diff, diff) + tau * np.einsum(
            "ki,kj->kij", shift, shift
        )
        eye = np.eye(y.shape[1])[None]
        return (nu * prior.covs + scatter) / denom[:, None, None] + reg * eye

    def kl_to_baseline(self, mix: Mixture) -> float:
        """Matched-component KL(evolved || baseline)."""
        b = fitted(self.baseline, "dtmm")
        return mixture_kl(mix.weights, mix.means, mix.covs, b.weights, b.means, b.covs)

    def _kl_projected(self, y: np.ndarray) -> float:
        return self.kl_to_baseline(self._evolve_projected(y, fitted(self.baseline, "dtmm")))

    def threshold_scores(self, data: FitData) -> np.ndarray:
        """KLs of the held-out threshold-training clips (SPEC 5.3 step 6)."""
        if self.held_out is None:
            raise RuntimeError("dtmm: not fitted")
        return self.held_out

    # ---------------------------------------------------------------- scoring
    def score(self, x: BackendInput) -> np.ndarray:
        fitted(self.baseline, "dtmm")
        return np.array(
            [self._kl_projected(self.project(v)) for v in clip_views(x)], dtype=np.float64
        )

    # ------------------------------------------------------------------ state
    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        b = fitted(self.baseline, "dtmm")
        arrays = {
            "pca_mean": self.pca_mean,
            "pca_components": self.pca_components,
            "pca_scale": self.pca_scale,
            "resid_stats": self.resid_stats,
            "weights": b.weights,
            "means": b.means,
            "covs": b.covs,
            "held_out": fitted(self.held_out, "dtmm"),
        }
        meta = {
            "params": self.params,
            "threshold": self.threshold,
            "threshold_in_sample": self.threshold_in_sample,
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> DtMMBackend:
        b = cls(**meta["params"])
        f = lambda k: np.asarray(arrays[k], dtype=np.float64)  # noqa: E731
        b.pca_mean, b.pca_components, b.pca_scale = (
            f("pca_mean"),
            f("pca_components"),
            f("pca_scale"),
        )
        b.resid_stats = f("resid_stats") if "resid_stats" in arrays else np.array([0.0, 1.0])
        b.baseline = Mixture(f("weights"), f("means"), f("covs"))
        b.held_out = f("held_out")
        b.threshold = meta["threshold"]
        b.threshold_in_sample = bool(meta.get("threshold_in_sample", False))
        return b
