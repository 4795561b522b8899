"""Features for the pipeline: the front end names an extractor, the cache makes re-runs cheap."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from stethoscope.data.clip import Clip
from stethoscope.models.base import Progress, resolve_device


@dataclass
class FeatureSet:
    clips: list[Clip]
    features: list[np.ndarray]
    failures: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0


def load_features(clips: Sequence[Clip], feature: str, *, cache_dir: Path | None = None,
                  device: str = "auto", on_error: str = "skip",
                  progress: Progress | None = None) -> FeatureSet:
    from stethoscope.features import FEATURES, extract

    extractor = FEATURES.get(feature)()
    cb = (lambda d, t: progress(f"features ({feature})", d, t, {})) if progress else None
    res = extract(list(clips), extractor, cache=cache_dir, device=resolve_device(device),
                  on_error=on_error, progress=cb)
    return FeatureSet(clips=list(res.clips), features=list(res.features),
                      failures=list(res.failures), seconds=res.seconds)
