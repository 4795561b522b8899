"""Decision thresholds: each rule is a small class behind one interface.

A rule is fitted on the anomaly scores of training clips only (normal data) and yields a scalar
threshold; a clip is decided anomalous when its score is strictly above it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from stethoscope.registry import Registry


class ThresholdRule(ABC):
    #: registry name, set by :func:`register_threshold`
    name: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        self.params = params
        self._value: float | None = None

    @property
    def value(self) -> float:
        """The fitted threshold."""
        if self._value is None:
            raise RuntimeError(f"{self.name}: threshold not fitted")
        return self._value

    @abstractmethod
    def compute(self, train_scores: np.ndarray) -> float: ...

    def fit(self, train_scores: np.ndarray) -> float:
        """Fit on training scores; NaN marks a clip its back end could not score as unseen."""
        s = np.asarray(train_scores, dtype=np.float64).ravel()
        s = s[~np.isnan(s)]
        if s.size == 0 or not np.all(np.isfinite(s)):
            raise ValueError(f"{self.name}: need finite training scores, got {s.size} values")
        self._value = float(self.compute(s))
        return self._value

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return (np.asarray(scores) > self.value).astype(np.int64)

    def get_state(self) -> dict:
        return {"rule": self.name, "params": self.params, "value": self.value}

    @classmethod
    def from_state(cls, meta: dict) -> ThresholdRule:
        rule = THRESHOLDS.get(meta["rule"])(**meta.get("params", {}))
        rule._value = float(meta["value"])
        return rule


THRESHOLDS: Registry[type[ThresholdRule]] = Registry("threshold rule")
R = TypeVar("R", bound=type[ThresholdRule])


def register_threshold(name: str) -> Callable[[R], R]:
    """Class decorator: register a rule under ``name`` and make ``name`` its ``.name``."""

    def deco(cls: R) -> R:
        cls.name = name
        THRESHOLDS.register(name)(cls)
        return cls

    return deco
