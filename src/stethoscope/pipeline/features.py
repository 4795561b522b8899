"""Features for the pipeline: the front end names an extractor, the cache makes re-runs cheap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stethoscope.data.catalog import OnError
from stethoscope.data.clip import Clip
from stethoscope.devices import resolve_device
from stethoscope.features import FEATURES, ExtractResult, extract
from stethoscope.progress import Progress

#: the pipeline's name for an extraction result (clips that succeeded, their features, failures)
FeatureSet = ExtractResult


def load_features(
    clips: Sequence[Clip],
    feature: str,
    *,
    cache_dir: Path | None = None,
    device: str = "auto",
    on_error: OnError = "skip",
    progress: Progress | None = None,
    channel: str = "mix",
) -> ExtractResult:
    """Features of ``clips`` by the extractor registered as ``feature``, reading ``channel`` of
    multi-channel files (see :mod:`stethoscope.data.channels`), through the cache."""
    extractor = FEATURES.get(feature)(channel=channel)
    return extract(
        list(clips),
        extractor,
        cache=cache_dir,
        device=resolve_device(device),
        on_error=on_error,
        progress=progress,
    )
