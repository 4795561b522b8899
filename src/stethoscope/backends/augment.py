"""Target-domain augmentation of a memory bank or a set of centres (SPEC 5.7).

With ~10 target training clips, the target domain is a few isolated points: a normal target test
clip lands far from all of them and scores like an anomaly. Two ways to fill the gaps, both on unit
vectors and both deterministic given the seed:

* ``memmixup`` (Saengthong et al., DCASE 2024, as MemMixup): each target embedding mixed with each
  of its ``k`` nearest source embeddings, ``lam * t + (1 - lam) * s`` with ``lam`` towards the
  target, so new points lie between the target clip and the source clips it resembles;
* ``smote``: SMOTE-style interpolation between target embeddings, ``t_i + u (t_j - t_i)`` with t_j
  one of t_i's ``k`` nearest target neighbours and u ~ U(0, 1), ``n_per_clip`` new points per clip.
"""

from __future__ import annotations

import numpy as np

from stethoscope.backends.base import l2_normalise

METHODS = ("none", "memmixup", "smote")


def memmixup(target: np.ndarray, source: np.ndarray, k: int = 5, lam: float = 0.8) -> np.ndarray:
    """(n_target * k, D) unit vectors mixing each target point with its k nearest source points."""
    if len(target) == 0 or len(source) == 0 or k < 1:
        return np.empty((0, target.shape[1] if target.ndim == 2 else 0))
    k = min(k, len(source))
    sim = target @ source.T
    nearest = np.argsort(-sim, axis=1)[:, :k]  # (n_target, k)
    mixed = lam * target[:, None, :] + (1.0 - lam) * source[nearest]
    return l2_normalise(mixed.reshape(-1, target.shape[1]))


def smote(target: np.ndarray, k: int = 3, n_per_clip: int = 5, seed: int = 0) -> np.ndarray:
    """(n_target * n_per_clip, D) unit vectors interpolated between neighbouring target points."""
    n = len(target)
    if n < 2 or n_per_clip < 1:
        return np.empty((0, target.shape[1] if target.ndim == 2 else 0))
    rng = np.random.default_rng(seed)
    k = min(k, n - 1)
    sim = target @ target.T
    np.fill_diagonal(sim, -np.inf)
    neighbours = np.argsort(-sim, axis=1)[:, :k]
    base = np.repeat(np.arange(n), n_per_clip)
    partner = neighbours[base, rng.integers(0, k, size=base.size)]
    u = rng.random(base.size)[:, None]
    return l2_normalise(target[base] + u * (target[partner] - target[base]))


def augment_target(
    target: np.ndarray,
    source: np.ndarray,
    method: str,
    *,
    k: int = 5,
    lam: float = 0.8,
    n_per_clip: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """The target points followed by their augmentation by ``method`` (unchanged for "none")."""
    if method not in METHODS:
        raise ValueError(f"target augmentation must be one of {METHODS}, got {method!r}")
    if method == "memmixup":
        extra = memmixup(target, source, k, lam)
    elif method == "smote":
        extra = smote(target, min(k, 3), n_per_clip, seed)
    else:
        return target
    return np.concatenate([target, extra]) if len(extra) else target
