"""The decoded waveform as a "feature", so CNN front ends can read cached audio without decoding.

Storage is lossless: a clip whose samples are all multiples of 1/32768 in [-1, 1) (every 16-bit PCM
source, which is all of DCASE) is stored as int16, half the size of float32, and scaled back exactly
(division by a power of two). Anything else (24-bit, float, resampled sources) is stored as float32.
Callers always get float32 at 16 kHz, bit-identical to :func:`stethoscope.audio.load_audio`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stethoscope import SAMPLE_RATE
from stethoscope.features.base import FeatureExtractor, register_feature

_SCALE = np.float32(32768.0)


@dataclass(frozen=True)
class WaveformConfig:
    sample_rate: int = SAMPLE_RATE
    #: what is read from a multi-channel file (audio.read_audio); "both": (2, samples) arrays
    channel: str = "mix"


@register_feature("waveform")
class Waveform(FeatureExtractor):
    """(n_samples,) float32 per clip, (2, n_samples) with both channels: the audio as decoded."""

    config_cls = WaveformConfig
    config: WaveformConfig

    def compute_batch(
        self, waves: list[np.ndarray], device: torch.device | str = "cpu"
    ) -> list[np.ndarray]:
        return [np.asarray(w, dtype=np.float32) for w in waves]

    def to_storage(self, feature: np.ndarray) -> np.ndarray:
        scaled = feature.astype(np.float32) * _SCALE  # exact: scaling by a power of two
        if (
            scaled.size
            and scaled.min() >= -32768
            and scaled.max() <= 32767
            and np.array_equal(scaled, np.rint(scaled))
        ):
            return scaled.astype(np.int16)
        return np.ascontiguousarray(feature, dtype=np.float32)

    def from_storage(self, stored: np.ndarray) -> np.ndarray:
        if stored.dtype == np.int16:
            return stored.astype(np.float32) / _SCALE
        return stored

    def stored_problem(self, stored: np.ndarray) -> str | None:
        want = (2,) if self.config.channel == "both" else ()
        if stored.shape[:-1] != want or stored.dtype not in (np.int16, np.float32):
            shape = "(2, samples)" if want else "(samples,)"
            return f"expected int16 or float32 {shape}, found {stored.dtype} {stored.shape}"
        return None
