"""Features for the pipeline: the front end names an extractor, the cache makes re-runs cheap."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from stethoscope.data.catalog import OnError
from stethoscope.data.clip import Clip
from stethoscope.devices import resolve_device
from stethoscope.features import FEATURES, ExtractResult, extract
from stethoscope.progress import Progress

#: the pipeline's name for an extraction result (clips that succeeded, their features, failures)
FeatureSet = ExtractResult
#: what a model reads: (feature extractor name, channel)
FeatureNeed = tuple[str, str]
#: the features of a list of clips, per need, in the clips' order
FeaturesByNeed = dict[FeatureNeed, list[np.ndarray]]


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


def features_for(
    needs: Iterable[FeatureNeed],
    clips: Sequence[Clip],
    *,
    cache_dir: Path | None = None,
    device: str = "auto",
    on_error: OnError = "skip",
    progress: Progress | None = None,
) -> tuple[list[Clip], FeaturesByNeed, list[tuple[Path, str]]]:
    """The clips every need could be computed for, their features per need, and the failures
    (a clip that fails for any need is left out, and listed once)."""
    results = {
        need: load_features(clips, need[0], cache_dir=cache_dir, device=device,
                            on_error=on_error, progress=progress, channel=need[1])
        for need in dict.fromkeys(needs)
    }  # fmt: skip
    failures: list[tuple[Path, str]] = []
    for res in results.values():
        failures += [f for f in res.failures if f not in failures]
    paths = [{str(c.path) for c in res.clips} for res in results.values()]
    kept = [c for c in clips if all(str(c.path) in p for p in paths)]
    features: FeaturesByNeed = {}
    for need, res in results.items():
        by_path = {str(c.path): f for c, f in zip(res.clips, res.features, strict=True)}
        features[need] = [by_path[str(c.path)] for c in kept]
    return kept, features, failures
