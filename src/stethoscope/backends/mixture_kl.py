"""Closed-form KL divergences for Gaussians and for mixtures with matched components (DtMM, SPEC 5.3).

The KL between two general Gaussian mixtures has no closed form, but DtMM evolves a mixture with
its component order fixed, so component k of the evolved mixture is the same "topic" as component k
of the baseline. That makes the matched-component bound exact to compute and meaningful:

    KL(w' || w) + sum_k w'_k KL(N(mu'_k, S'_k) || N(mu_k, S_k))

(it is the KL between the joint distributions of (component, x), an upper bound of the mixture KL).
Covariances may be full (K, d, d) or diagonal (K, d).
"""

from __future__ import annotations

import numpy as np


def _as_batch(mu: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(K, d) means, (K, d, d) or (K, d) covariances, and whether they are diagonal."""
    mu = np.asarray(mu, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if mu.ndim == 1:
        mu, cov = mu[None], cov[None]
    if cov.ndim not in (2, 3) or cov.shape[0] != mu.shape[0]:
        raise ValueError(
            f"gaussian_kl: covariance shape {cov.shape} does not match means {mu.shape}"
        )
    return mu, cov, cov.ndim == 2


def gaussian_kl(
    mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray
) -> np.ndarray | float:
    """KL(N(mu1, cov1) || N(mu2, cov2)).

    Single Gaussians: ``mu`` (d,), ``cov`` (d, d) or (d,) diagonal -> float. Batches: ``mu`` (K, d),
    ``cov`` (K, d, d) or (K, d) -> (K,). Both sides must use the same covariance kind.
    """
    single = np.ndim(mu1) == 1
    m1, c1, diag1 = _as_batch(mu1, cov1)
    m2, c2, diag2 = _as_batch(mu2, cov2)
    if diag1 != diag2:
        raise ValueError("gaussian_kl: both sides need the same covariance kind (full or diagonal)")
    d = m1.shape[-1]
    diff = m2 - m1
    if diag1:
        out = 0.5 * (
            (c1 / c2).sum(-1) + (diff**2 / c2).sum(-1) - d + np.log(c2).sum(-1) - np.log(c1).sum(-1)
        )
    else:
        l2 = np.linalg.cholesky(c2)
        l1 = np.linalg.cholesky(c1)
        # tr(S2^-1 S1) = ||L2^-1 L1||_F^2 ; Mahalanobis term = ||L2^-1 diff||^2
        a = np.linalg.solve(l2, l1)
        b = np.linalg.solve(l2, diff[..., None])[..., 0]
        logdet2 = 2.0 * np.log(np.diagonal(l2, axis1=-2, axis2=-1)).sum(-1)
        logdet1 = 2.0 * np.log(np.diagonal(l1, axis1=-2, axis2=-1)).sum(-1)
        out = 0.5 * ((a**2).sum((-2, -1)) + (b**2).sum(-1) - d + logdet2 - logdet1)
    out = np.maximum(out, 0.0)  # clip round-off below zero; KL >= 0
    return float(out[0]) if single else out


def categorical_kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) of two weight vectors; terms with p_k = 0 contribute 0."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    nz = p > 0
    return float(max((p[nz] * (np.log(p[nz]) - np.log(q[nz]))).sum(), 0.0))


def mixture_kl(
    w1: np.ndarray,
    mu1: np.ndarray,
    cov1: np.ndarray,
    w2: np.ndarray,
    mu2: np.ndarray,
    cov2: np.ndarray,
) -> float:
    """Matched-component KL from mixture 1 (evolved) to mixture 2 (baseline):
    KL(w1 || w2) + sum_k w1_k KL(N1_k || N2_k)."""
    w1 = np.asarray(w1, dtype=np.float64)
    comp = np.atleast_1d(gaussian_kl(np.atleast_2d(mu1), cov1, np.atleast_2d(mu2), cov2))
    return categorical_kl(w1, w2) + float((w1 * comp).sum())
