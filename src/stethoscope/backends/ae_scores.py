"""The official AE baseline's two scores, computed from reconstruction residuals (SPEC 4.1, 5.4).

Input of both back ends: one (T_i, D) array per clip of residuals ``x - x_hat`` of the clip's frame
vectors (see :func:`stethoscope.models.ae.trainer.reconstruction_residuals`); ``FitData.x`` holds
the residuals of the *training* clips, ``FitData.domains`` their domains.

``ae-mse``: score = mean over the clip's vectors of the mean squared residual (= mean of all squared
residual entries), exactly the official ``F.mse_loss(recon, x).mean()``. Nothing is fitted.

``ae-mahala``. What the official code (nttcslab/dcase2023_task2_baseline_ae, ``networks/criterion/
mahala.py`` and ``networks/dcase2023t2_ae/dcase2023t2_ae.py``, unchanged for 2023-2025) computes:

1. Covariances, after training, in one extra eval-mode pass over the shuffled training loader (the
   90 % training split, batches of 256 vectors). In each batch the residuals of the source vectors
   are cut into ``block_size`` = n_mels = 128-dim blocks (the 640-dim vector is 5 frames x 128 mels,
   frame-major, so a block is one frame's residual), centred by the mean block *of that batch*, and
   ``diff.T @ diff`` is accumulated; likewise for the batch's target vectors. The sums are divided
   by (number of *vectors* - 1), not blocks, so each matrix is 640/128 = 5 times a per-block
   covariance (a constant factor on all scores). No target vectors: target covariance = source
   covariance. Inverted with ``torch.inverse`` in float32, no regularisation.
2. Score of a clip: its blocks ``delta`` (5T x 128), the full matrix ``delta @ P @ delta.T`` (5T x
   5T), averaged over all entries. That equals ``m.T @ P @ m`` with ``m`` the clip's mean residual
   block: the *squared* Mahalanobis norm of the mean residual, with no training mean subtracted. The
   clip's score is the minimum of the source and target values.

What we implement (``variant="official"``, ``reduction="mean_residual"``, the defaults): the same,
with these differences: (a) the covariances use the residuals of *all* training clips passed in (the
caller decides; the official pass uses only its 90 % training split); (b) the batches are our own
seeded permutation (``FitData.seed``) of all vectors, so per-batch centring matches in kind, not
batch for batch; (c) float64 throughout, a tiny ridge ``ridge * trace(S)/b * I`` (1e-6) and a
Cholesky inverse (pseudo-inverse if Cholesky fails) instead of a bare inverse; (d) when the target
domain has few blocks (``n_t < min_target_blocks``, default 10 * block_size), the target covariance
is shrunk towards the source one, ``w*S_t + (1-w)*S_s`` with ``w = n_t / min_target_blocks``; with
DCASE2025's 10 target clips (~3000 vectors, ~15000 blocks) ``w = 1`` and this equals the official
computation.

Options beyond the official code: ``variant="clean"`` centres each domain at its global mean block
and divides by (blocks - 1), a proper per-block covariance; ``reduction="mean_distance"`` averages
the squared Mahalanobis norm of every block instead of taking the norm of the mean block;
``block_size=None`` uses the whole D-dim residual as one block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stethoscope.backends.base import Backend, FitData, register_backend

VARIANTS = ("official", "clean")
REDUCTIONS = ("mean_residual", "mean_distance")


def _clips(x: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    clips = [np.asarray(c) for c in x]
    for c in clips:
        if c.ndim != 2 or len(c) == 0:
            raise ValueError(
                f"each clip must be a non-empty (T, D) residual array, got shape {c.shape}"
            )
    return clips


@register_backend("ae-mse")
class AEMSEBackend(Backend):
    """Mean squared reconstruction error of the clip; stateless (fit only satisfies the interface)."""

    inputs = ("residual",)

    def fit(self, data: FitData) -> AEMSEBackend:
        _clips(data.x)
        return self

    def score(self, x: np.ndarray | list[np.ndarray]) -> np.ndarray:
        return np.array(
            [np.mean(np.square(c, dtype=np.float64)) for c in _clips(x)], dtype=np.float64
        )

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        return {}, {"name": self.name}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> AEMSEBackend:
        return cls()


def precision_matrix(cov: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Inverse of ``cov + ridge * mean(diag) * I`` by Cholesky; pseudo-inverse when not positive definite."""
    import scipy.linalg  # fitting only: scoring a fitted back end needs numpy alone

    cov = np.asarray(cov, dtype=np.float64)
    reg = cov
    if ridge > 0:
        reg = cov + ridge * max(float(np.trace(cov)) / len(cov), 1e-12) * np.eye(len(cov))
    try:
        c = scipy.linalg.cho_factor(reg, lower=True)
        prec = scipy.linalg.cho_solve(c, np.eye(len(cov)))
    except np.linalg.LinAlgError:
        prec = np.linalg.pinv(reg, hermitian=True)
    return (prec + prec.T) / 2


@register_backend("ae-mahala")
class AEMahalaBackend(Backend):
    """Min over source/target of the Mahalanobis score of the clip's residual blocks (see module doc)."""

    inputs = ("residual",)

    def __init__(
        self,
        block_size: int | None = 128,
        variant: str = "official",
        reduction: str = "mean_residual",
        batch_size: int = 256,
        ridge: float = 1e-6,
        min_target_blocks: int | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}")
        self.block_size = block_size
        self.variant = variant
        self.reduction = reduction
        self.batch_size = batch_size
        self.ridge = ridge
        self.min_target_blocks = min_target_blocks
        self.cov: dict[str, np.ndarray] = {}
        self.prec: dict[str, np.ndarray] = {}
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------ fitting
    def _block(self, dim: int) -> int:
        b = self.block_size or dim
        if dim % b:
            raise ValueError(f"residual dimension {dim} is not a multiple of block_size {b}")
        return b

    def _scatter_official(
        self, clips: list[np.ndarray], dom: np.ndarray, b: int, seed: int
    ) -> dict[str, tuple[np.ndarray, int]]:
        """Per-batch-centred scatter, normalised per vector, as the official covariance pass.

        Computed without materialising the batches: for every (batch, domain) group g with block sum
        s_g over n_g blocks, sum (x - m_g)(x - m_g)^T = sum x x^T - s_g s_g^T / n_g, so one Gram
        matrix per domain plus the group sums give the official value exactly (float64).
        """
        lengths = np.array([len(c) for c in clips])
        n, k = int(lengths.sum()), clips[0].shape[1] // b
        vdom = np.repeat(dom, lengths)
        batch_of = np.empty(n, dtype=np.int64)
        batch_of[np.random.default_rng(seed).permutation(n)] = np.arange(n) // self.batch_size
        n_batches = int(batch_of.max()) + 1
        keep = np.bincount(batch_of)[batch_of] > 1  # the official loop skips single-vector batches
        starts = np.r_[0, np.cumsum(lengths)]
        out = {}
        for d in ("source", "target"):
            sel = keep & (vdom == d)
            count = int(sel.sum())
            if count == 0:
                continue
            gram = np.zeros((b, b))
            sums = np.zeros((n_batches, b))
            for c, lo, hi in zip(clips, starts[:-1], starts[1:]):
                m = sel[lo:hi]
                if not m.any():
                    continue
                blk = c[m].astype(np.float64).reshape(-1, b)
                gram += blk.T @ blk
                np.add.at(sums, batch_of[lo:hi][m], blk.reshape(-1, k, b).sum(axis=1))
            n_blk = np.bincount(batch_of[sel], minlength=n_batches) * k
            nz = n_blk > 0
            gram -= (sums[nz] / n_blk[nz, None]).T @ sums[nz]
            out[d] = ((gram + gram.T) / 2 / max(count - 1, 1), count * k)
        return out

    def _scatter_clean(
        self, clips: list[np.ndarray], dom: np.ndarray, b: int
    ) -> dict[str, tuple[np.ndarray, int]]:
        """Unbiased per-block covariance around each domain's global mean block (two passes)."""
        out = {}
        for d in ("source", "target"):
            sel = [c for c, k in zip(clips, dom) if k == d]
            if not sel:
                continue
            n = sum(len(c) * (c.shape[1] // b) for c in sel)
            mu = sum(c.reshape(-1, b).sum(axis=0, dtype=np.float64) for c in sel) / n
            scat = np.zeros((b, b))
            for c in sel:
                blk = c.reshape(-1, b).astype(np.float64) - mu
                scat += blk.T @ blk
            out[d] = (scat / max(n - 1, 1), n)
        return out

    def fit(self, data: FitData) -> AEMahalaBackend:
        clips = _clips(data.x)
        dom = np.asarray(data.domains).astype(str)
        if len(dom) != len(clips):
            raise ValueError("FitData.domains must have one entry per clip")
        if not set(dom) <= {"source", "target"}:
            raise ValueError(
                f"domains must be 'source' or 'target', got {sorted(set(dom) - {'source', 'target'})}"
            )
        dims = {c.shape[1] for c in clips}
        if len(dims) != 1:
            raise ValueError(f"all residuals must have the same dimension, got {sorted(dims)}")
        b = self._block(dims.pop())
        if self.variant == "official":
            stats = self._scatter_official(clips, dom, b, data.seed)
        else:
            stats = self._scatter_clean(clips, dom, b)
        if not stats:
            raise ValueError("no source or target training clips")
        src = stats["source"] if "source" in stats else stats["target"]
        tgt = stats.get("target")
        info: dict[str, Any] = {
            "block_size": b,
            "n_source_blocks": int(stats["source"][1]) if "source" in stats else 0,
            "n_target_blocks": int(tgt[1]) if tgt else 0,
            "target_fallback": tgt is None,
            "source_fallback": "source" not in stats,
        }
        cov_s = src[0]
        if tgt is None:
            cov_t, w = cov_s.copy(), 0.0
        else:
            min_t = self.min_target_blocks if self.min_target_blocks is not None else 10 * b
            w = 1.0 if min_t <= 0 else min(1.0, tgt[1] / min_t)
            cov_t = w * tgt[0] + (1.0 - w) * cov_s
        info["target_weight"] = float(w)
        self._set(cov_s, cov_t)
        self.info = info
        return self

    def _set(self, cov_source: np.ndarray, cov_target: np.ndarray) -> None:
        self.cov = {
            "source": np.asarray(cov_source, np.float64),
            "target": np.asarray(cov_target, np.float64),
        }
        self.prec = {d: precision_matrix(c, self.ridge) for d, c in self.cov.items()}

    @classmethod
    def from_covariances(
        cls, cov_source: np.ndarray, cov_target: np.ndarray | None = None, **params: Any
    ) -> AEMahalaBackend:
        """A back end with given covariances (target defaults to source): tests and hand-made models."""
        self = cls(**params)
        cov_source = np.asarray(cov_source, np.float64)
        self.block_size = len(cov_source)
        self._set(cov_source, cov_source if cov_target is None else cov_target)
        self.info = {"block_size": len(cov_source), "target_fallback": cov_target is None}
        return self

    # ------------------------------------------------------------ scoring
    def domain_scores(self, x: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """(N, 2) scores against the source and the target covariance (columns in that order)."""
        if not self.prec:
            raise RuntimeError("ae-mahala back end is not fitted")
        b = len(self.prec["source"])
        out = np.empty((len(x), 2))
        for i, c in enumerate(_clips(x)):
            if c.shape[1] % b:
                raise ValueError(
                    f"residual dimension {c.shape[1]} is not a multiple of block_size {b}"
                )
            blk = c.reshape(-1, b).astype(np.float64)
            for j, d in enumerate(("source", "target")):
                p = self.prec[d]
                if self.reduction == "mean_residual":
                    m = blk.mean(axis=0)
                    out[i, j] = m @ p @ m
                else:
                    out[i, j] = np.mean(np.einsum("ij,ij->i", blk @ p, blk))
        return out

    def score(self, x: np.ndarray | list[np.ndarray]) -> np.ndarray:
        return self.domain_scores(x).min(axis=1)

    # ------------------------------------------------------------ state
    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {f"cov_{d}": c for d, c in self.cov.items()}
        arrays.update({f"prec_{d}": p for d, p in self.prec.items()})
        meta = {
            "name": self.name,
            "block_size": self.block_size,
            "variant": self.variant,
            "reduction": self.reduction,
            "batch_size": self.batch_size,
            "ridge": self.ridge,
            "min_target_blocks": self.min_target_blocks,
            "info": self.info,
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> AEMahalaBackend:
        self = cls(
            block_size=meta["block_size"],
            variant=meta["variant"],
            reduction=meta["reduction"],
            batch_size=meta["batch_size"],
            ridge=meta["ridge"],
            min_target_blocks=meta["min_target_blocks"],
        )
        self.cov = {d: np.asarray(arrays[f"cov_{d}"], np.float64) for d in ("source", "target")}
        self.prec = {d: np.asarray(arrays[f"prec_{d}"], np.float64) for d in ("source", "target")}
        self.info = dict(meta.get("info", {}))
        return self
