"""The back-end interface: a scorer fitted per machine type and section on training data only.

A back end turns front-end outputs of clips into one anomaly score per clip (higher = more anomalous).
It never sees test statistics: ``fit`` gets training clips, ``score`` is a pure function of one clip's
input and the fitted state. State is plain arrays + JSON so a model directory needs no pickle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from stethoscope.registry import Registry


@dataclass
class FitData:
    """Training clips of one machine type and section, as the front end sees them.

    ``x``: (N, D) clip embeddings, or (N, V, D) several views per clip (DtMM), or a list of (T_i, D)
    per-clip frame vectors (AE residuals); ``domains``: (N,) "source"/"target";
    ``classes``: (N,) int auxiliary class index (attribute class) within the section, or None.
    """

    x: np.ndarray | list[np.ndarray]
    domains: np.ndarray
    classes: np.ndarray | None = None
    seed: int = 0


class Backend(ABC):
    name: str = ""

    @abstractmethod
    def fit(self, data: FitData) -> "Backend": ...

    @abstractmethod
    def score(self, x: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """(N,) anomaly scores for N clips, same input kind as ``FitData.x``."""

    @abstractmethod
    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays (for safetensors) and JSON-able meta that :meth:`from_state` restores."""

    @classmethod
    @abstractmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> "Backend": ...


BACKENDS: Registry[type[Backend]] = Registry("back end")
register_backend = BACKENDS.register


def l2_normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Length normalisation applied to embeddings before any back end (SPEC 4.2)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def clip_embeddings(x: np.ndarray) -> np.ndarray:
    """(N, D) unit-length clip embeddings; (N, V, D) view stacks are pooled by their mean direction."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        x = l2_normalise(x).mean(axis=1)
    if x.ndim != 2:
        raise ValueError(f"expected (N, D) or (N, V, D) embeddings, got shape {x.shape}")
    return l2_normalise(x)


def min_cosine_distance(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N,) min over centres of 1 - cos; both inputs unit length."""
    return 1.0 - (z @ centres.T).max(axis=1)
