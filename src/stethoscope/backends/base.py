"""The back-end contract: a scorer fitted per machine type and section on training data only.

A back end turns front-end outputs of clips into one anomaly score per clip (higher = more
anomalous). It never sees test statistics: ``fit`` gets training clips, ``score`` is a pure function
of one clip's input and the fitted state. State is plain arrays + JSON so a model directory needs no
pickle. What the pipeline asks of a back end is all declared here: the inputs it takes, how it
fits and scores, the training scores its decision threshold is fitted on, and its state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from stethoscope.registry import Registry

#: One clip group's back-end input: (N, D) embeddings, (N, V, D) views, (N,) scores, or a list of
#: per-clip (T_i, D) arrays (AE residuals).
BackendInput = np.ndarray | list[np.ndarray]


@dataclass
class FitData:
    """Training clips of one machine type and section, as the front end sees them.

    ``x``: the front end's output for these clips (see :data:`BackendInput`); ``domains``: (N,)
    "source"/"target"; ``classes``: (N,) int auxiliary class index (attribute class) within the
    section, or None; ``seed``: for any randomness in fitting (splits, k-means).
    """

    x: BackendInput
    domains: np.ndarray
    classes: np.ndarray | None = None
    seed: int = 0


class Backend(ABC):
    """Scores clips of one machine type and section."""

    #: registry name, set by :func:`register_backend`
    name: ClassVar[str] = ""
    #: the front-end outputs it can score ("embedding", "views", "residual", "recon-error")
    inputs: ClassVar[tuple[str, ...]] = ("embedding",)

    @abstractmethod
    def fit(self, data: FitData) -> Backend: ...

    @abstractmethod
    def score(self, x: BackendInput) -> np.ndarray:
        """(N,) anomaly scores for N clips, same input kind as ``FitData.x``."""

    def threshold_scores(self, data: FitData) -> np.ndarray:
        """(N,) scores of the training clips, in their order, that the decision threshold is
        fitted on (and a fusion of systems standardises with); NaN for a clip left out.

        By default the fitted back end's scores of its own training clips. A back end that can
        score training clips as unseen clips (held out, by the same rule as :meth:`score`)
        overrides this, since in-sample scores run low.
        """
        return np.asarray(self.score(data.x), dtype=np.float64)

    @abstractmethod
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays (for safetensors) and JSON-able meta that :meth:`from_state` restores."""

    @classmethod
    @abstractmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Backend: ...


BACKENDS: Registry[type[Backend]] = Registry("back end")
T = TypeVar("T")


def fitted(value: T | None, backend: str) -> T:
    """``value`` of a fitted back end's state; RuntimeError when the back end is not fitted."""
    if value is None:
        raise RuntimeError(f"{backend}: not fitted")
    return value


B = TypeVar("B", bound=type[Backend])


def register_backend(name: str) -> Callable[[B], B]:
    """Class decorator: register a back end under ``name`` and make ``name`` its ``.name``."""

    def deco(cls: B) -> B:
        cls.name = name
        BACKENDS.register(name)(cls)
        return cls

    return deco


def l2_normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Length normalisation applied to embeddings before any back end (SPEC 4.2)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def clip_embeddings(x: BackendInput) -> np.ndarray:
    """(N, D) unit-length clip embeddings; (N, V, D) view stacks are pooled by their mean direction."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 3:
        arr = l2_normalise(arr).mean(axis=1)
    if arr.ndim != 2:
        raise ValueError(f"expected (N, D) or (N, V, D) embeddings, got shape {arr.shape}")
    return l2_normalise(arr)


def min_cosine_distance(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N,) min over centres of 1 - cos; both inputs unit length."""
    return 1.0 - (z @ centres.T).max(axis=1)
