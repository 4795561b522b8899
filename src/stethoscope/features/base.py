"""Feature extractors: the common interface, and the registry that names them in configs.

An extractor is identified on disk by :meth:`FeatureExtractor.key`, a hash of its name, its
implementation version and its configuration. Anything that changes the numbers must change the key,
otherwise a cache would silently serve features computed under another definition.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any, ClassVar

import numpy as np
import torch

from stethoscope.registry import Registry

FEATURES: Registry[type[FeatureExtractor]] = Registry("feature extractor")


def register_feature(name: str) -> Callable[[type[FeatureExtractor]], type[FeatureExtractor]]:
    """Class decorator: register an extractor under ``name`` and make ``name`` its ``.name``."""
    register = FEATURES.register(name)

    def deco(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
        cls.name = name
        return register(cls)

    return deco


class FeatureExtractor:
    """Turns decoded 16 kHz waveforms into one feature array per clip.

    Subclasses set ``config_cls`` (a frozen dataclass whose fields define the output) and implement
    :meth:`compute_batch`. The storage hooks let the cache keep a smaller, lossless form (e.g.
    unstacked log-mel frames) than what callers see, and reject entries that cannot be that form.
    """

    name: ClassVar[str] = ""
    #: Bump when the implementation changes its output for an unchanged config (invalidates caches).
    version: ClassVar[int] = 1
    config_cls: ClassVar[type]
    dtype: ClassVar[np.dtype] = np.dtype(np.float32)

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        base = config if config is not None else self.config_cls()
        self.config = replace(base, **overrides) if overrides else base
        self._key: tuple[Any, str] | None = None

    def key(self) -> str:
        """Stable short hash of name + version + config, used as the cache namespace.

        Remembered for the config object it was computed from, since the cache asks for it per clip.
        """
        if self._key is None or self._key[0] is not self.config:
            ident = {"name": self.name, "version": self.version, "config": asdict(self.config)}
            blob = json.dumps(ident, sort_keys=True, separators=(",", ":"))
            self._key = (self.config, hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16])
        return self._key[1]

    def describe(self) -> dict[str, Any]:
        """What the cache writes next to the arrays, so a cache folder explains itself."""
        return {
            "name": self.name,
            "key": self.key(),
            "version": self.version,
            "dtype": str(self.dtype),
            "config": asdict(self.config),
        }

    def compute_batch(
        self, waves: list[np.ndarray], device: torch.device | str = "cpu"
    ) -> list[np.ndarray]:
        """Features of each waveform (float32 mono at 16 kHz), in input order."""
        raise NotImplementedError

    def to_storage(self, feature: np.ndarray) -> np.ndarray:
        """Array written to the cache for ``feature`` (must round-trip exactly)."""
        return feature

    def from_storage(self, stored: np.ndarray) -> np.ndarray:
        """Feature rebuilt from a (memory-mapped, read-only) cached array; avoid copying."""
        return stored

    def stored_problem(self, stored: np.ndarray) -> str | None:
        """Why ``stored`` cannot be a :meth:`to_storage` array of this extractor, or None.

        The cache asks before serving an entry, so a damaged or foreign file is recomputed instead
        of reaching a model. The base class accepts anything; subclasses check dtype and shape.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"
