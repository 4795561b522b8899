"""Auxiliary classification classes for the embedding models (SPEC 2).

Class = machine x section x attribute string; a machine type with hidden attributes contributes
machine x section x domain classes. The mapping is fixed at training time and saved with the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stethoscope.data.clip import Clip


def class_names(clips: Sequence[Clip]) -> list[str]:
    """Sorted class names of the (training) clips."""
    return sorted({c.class_name() for c in clips})


def class_labels(
    clips: Sequence[Clip], names: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Integer class index per clip and the class names; unknown classes map to -1."""
    names = list(names) if names is not None else class_names(clips)
    index = {n: i for i, n in enumerate(names)}
    return np.array([index.get(c.class_name(), -1) for c in clips], dtype=np.int64), names
