"""The features of many clips as a sequence that reads each one from the cache when asked.

A whole training set does not fit in memory (7,000 clips of 10 s are 4.5 GB as float32 waveforms),
and need not: a cached feature is held as the path of its cache entry, and indexing maps that
file and rebuilds the feature (:meth:`FeatureExtractor.from_storage`: a view of the mapped array,
or for int16 waveforms a float32 copy). Nothing stays mapped or copied but what the caller keeps,
so memory follows what is in use (a batch), not the data set, and no file descriptor is held per
clip. Features with no cache entry (no cache, or an unwritable one) are held as arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import overload

import numpy as np

from stethoscope.features.cache import map_npy

#: a feature as held: its array, or the path of its cache entry
Held = np.ndarray | str


class StoredFeatures(Sequence[np.ndarray]):
    """Features in clip order; ``rebuild`` turns a stored array back into the feature."""

    def __init__(
        self, items: Iterable[Held], rebuild: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        self._items: list[Held] = list(items)
        self._rebuild = rebuild

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> StoredFeatures: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | StoredFeatures:
        if isinstance(index, slice):
            return StoredFeatures(self._items[index], self._rebuild)
        return self._read(self._items[index])

    def take(self, indices: Iterable[int]) -> StoredFeatures:
        """The features at ``indices``, still unread."""
        return StoredFeatures([self._items[i] for i in indices], self._rebuild)

    @property
    def in_memory(self) -> int:
        """How many features are held as arrays rather than cache entries."""
        return sum(not isinstance(item, str) for item in self._items)

    def _read(self, item: Held) -> np.ndarray:
        if not isinstance(item, str):
            return item
        stored = map_npy(item)
        return self._rebuild(stored) if self._rebuild is not None else stored

    def __repr__(self) -> str:
        return f"StoredFeatures({len(self)} clips, {self.in_memory} in memory)"
