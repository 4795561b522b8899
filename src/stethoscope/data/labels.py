"""Auxiliary classification classes for the embedding models (SPEC 2).

Class = machine x section x attribute string; a machine type with hidden attributes contributes
machine x section x domain classes. The mapping is fixed at training time and saved with the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stethoscope.data.clip import Clip
from stethoscope.errors import ConfigError, ModelError


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


def section_columns(names: Sequence[str], clips: Sequence[Clip]) -> list[int]:
    """Indices in ``names`` of the classes of the clips' one section (a head's logits for it)."""
    sections = {(c.machine, c.section) for c in clips}
    if len(sections) != 1:
        raise ConfigError("embedding-logits are for the clips of one section at a time")
    machine, section = sections.pop()
    prefix = f"{machine}|{section}|"
    cols = [i for i, name in enumerate(names) if name.startswith(prefix)]
    if not cols:
        raise ModelError(f"no trained class of {machine} section {section}")
    return cols
