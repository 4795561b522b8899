"""Feature extractors: the common interface, and the registry that names them in configs.

An extractor is identified on disk by :meth:`FeatureExtractor.key`, a hash of its name, its
implementation version and its configuration. Anything that changes the numbers must change the key,
otherwise a cache would silently serve features computed under another definition.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from stethoscope.registry import Registry

FEATURES: Registry[type["FeatureExtractor"]] = Registry("feature extractor")


def register_feature(name: str) -> Callable[[type["FeatureExtractor"]], type["FeatureExtractor"]]:
    """Class decorator: register an extractor under ``name`` and make ``name`` its ``.name``."""
    register = FEATURES.register(name)

    def deco(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
        cls.name = name
        return register(cls)
    return deco


class FeatureExtractor:
    """Turns decoded 16 kHz waveforms into one feature array per clip.

    Subclasses set ``config_cls`` (a dataclass whose fields define the output), ``dtype`` (of the
    arrays handed to callers) and implement :meth:`compute_batch`. The storage hooks let the cache
    keep a smaller, lossless form (e.g. unstacked log-mel frames) than what callers see.
    """

    name: ClassVar[str] = ""
    #: Bump when the implementation changes its output for an unchanged config (invalidates caches).
    version: ClassVar[int] = 1
    config_cls: ClassVar[type]
    dtype: ClassVar[np.dtype] = np.dtype(np.float32)

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        base = config if config is not None else self.config_cls()
        self.config = replace(base, **overrides) if overrides else base

    def key(self) -> str:
        """Stable short hash of name + version + config, used as the cache namespace.

        Remembered for the (frozen) config object it was computed from: the cache asks for it for
        every clip, and hashing the config each time cost as much as writing a small array.
        """
        memo = getattr(self, "_key_memo", None)
        if memo is not None and memo[0] is self.config:
            return memo[1]
        ident = {"name": self.name, "version": self.version, "config": asdict(self.config)}
        blob = json.dumps(ident, sort_keys=True, separators=(",", ":"))
        key = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
        self._key_memo = (self.config, key)
        return key

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to feature workers) without the ``*_memo`` attributes, rebuilt on use."""
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_memo")}

    def describe(self) -> dict[str, Any]:
        """What the cache writes next to the arrays, so a cache folder explains itself."""
        return {"name": self.name, "key": self.key(), "version": self.version,
                "dtype": str(self.dtype), "config": asdict(self.config)}

    def compute_batch(self, waves: list[np.ndarray], device: torch.device | str = "cpu"
                      ) -> list[np.ndarray]:
        """Features of each waveform (float32 mono at 16 kHz), in input order."""
        raise NotImplementedError

    def compute_file(self, path: str | Path) -> np.ndarray:
        """Feature of one audio file on CPU; raises :class:`~stethoscope.audio.AudioError`.

        Extractors with a faster way from file to feature than decode-then-compute override it.
        """
        from stethoscope.audio import load_audio  # deferred: audio is not needed to name extractors

        return self.compute_batch([load_audio(path)], "cpu")[0]

    def prefers_files(self, device: torch.device | str) -> bool:
        """True where :meth:`compute_file` beats decoding a batch and :meth:`compute_batch` on it
        (so that in-process extraction goes clip by clip from the files)."""
        return False

    def prepare(self) -> None:
        """Build lookup tables now; called before forking workers, so that each of them does not
        build (or import what builds) them again."""

    def compute_stored(self, path: str | Path, out: np.ndarray | None = None) -> np.ndarray:
        """The stored form (:meth:`to_storage`) of one file's feature, written into ``out`` when
        it fits there (multi-process extraction passes a slot of its shared buffer)."""
        return place(self.to_storage(self.compute_file(path)), out)

    def storage_layout(self, n_bytes: int) -> tuple[int, int] | None:
        """(most rows, values per row) of the float32 stored array of a 16-bit PCM mono WAV of
        ``n_bytes`` bytes, or None (the default) to stay out of multi-process extraction, which
        gives each clip a slot of that size in one shared buffer."""
        return None

    def to_storage(self, feature: np.ndarray) -> np.ndarray:
        """Array written to the cache for ``feature`` (must round-trip exactly)."""
        return feature

    def from_storage(self, stored: np.ndarray) -> np.ndarray:
        """Feature rebuilt from a (memory-mapped, read-only) cached array; avoid copying."""
        return stored

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def place(array: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``array`` copied into the start of ``out`` where it fits there (same dtype and row shape,
    enough rows), returned as that view; otherwise ``array`` itself."""
    if (out is None or out.dtype != array.dtype or out.shape[1:] != array.shape[1:]
            or out.shape[0] < array.shape[0]):
        return array
    view = out[:array.shape[0]]
    view[...] = array
    return view
