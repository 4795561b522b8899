"""The ACAE of an export: its feature maps in numpy, its encoder (or whole network) in onnxruntime.

The features are those of :mod:`stethoscope.models.acae.inputs`: the centred (reflect-padded)
|STFT| with a periodic Hann window, cut to the kept bins, average-pooled in frequency as
``adaptive_avg_pool1d`` pools, in dB (floor ``amin``), then a centred moving average over time that
averages only the frames that exist at the edges. The standardisation is inside the graph. Clips
longer than the input are cut into windows and their outputs averaged, as in torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stethoscope.data.clip import Clip
from stethoscope.dsp.logmel import frames, hann, rfft
from stethoscope.dsp.windows import clip_windows, per_clip_mean, tile_crop
from stethoscope.errors import ConfigError
from stethoscope.export.frontends import NumpyFrontEnd
from stethoscope.export.manifest import field
from stethoscope.export.sessions import Network


def pooling_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_in, n_out) matrix whose product averages the bins ``adaptive_avg_pool1d`` averages:
    output i covers [floor(i n_in / n_out), ceil((i + 1) n_in / n_out))."""
    out = np.zeros((n_in, n_out), dtype=np.float64)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        out[lo:hi, i] = 1.0 / (hi - lo)
    return out


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over the last axis; at the edges, of the frames that exist."""
    if window == 1:
        return x
    h = window // 2
    t = x.shape[-1]
    cs = np.concatenate([np.zeros((*x.shape[:-1], 1)), np.cumsum(x, axis=-1, dtype=np.float64)], -1)
    lo = np.clip(np.arange(t) - h, 0, t)
    hi = np.clip(np.arange(t) + h + 1, 0, t)
    return ((cs[..., hi] - cs[..., lo]) / (hi - lo)).astype(np.float32)


class ACAEFeatures:
    """(B, n) waveforms -> (B, F, T) time-averaged log magnitude STFT, before standardisation."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.n_fft, self.hop = int(spec["n_fft"]), int(spec["hop"])
        self.input_samples = int(spec["input_samples"])
        self.avg_window, self.amin = int(spec["avg_window"]), float(spec["amin"])
        n_bins = self.n_fft // 2 + 1
        max_freq, sr = spec.get("max_freq_hz"), int(spec["sr"])
        self.kept = (
            n_bins
            if max_freq is None
            else max(1, min(n_bins, int(np.floor(max_freq * self.n_fft / sr)) + 1))
        )
        freq_bins = spec.get("freq_bins")
        self.pool = (
            pooling_matrix(self.kept, int(freq_bins)).astype(np.float32)
            if freq_bins is not None and int(freq_bins) < self.kept
            else None
        )
        self.window = hann(self.n_fft)

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        pad = self.n_fft // 2
        padded = np.pad(waves, ((0, 0), (pad, pad)), mode="reflect")
        spec = rfft(frames(padded, self.n_fft, self.hop) * self.window)
        mag = np.abs(spec[..., : self.kept]).astype(np.float32)  # (B, T, F)
        if self.pool is not None:
            mag = mag @ self.pool
        db = np.log(np.maximum(mag, np.float32(self.amin))) * np.float32(20.0 / np.log(10.0))
        return moving_average(np.ascontiguousarray(db.transpose(0, 2, 1)), self.avg_window)


class ACAEFrontEnd(NumpyFrontEnd):
    def __init__(
        self,
        directory: Path,
        meta: dict[str, Any],
        feature: dict[str, Any],
        threads: int | None = None,
    ) -> None:
        super().__init__(directory, meta, feature)
        self.network = Network(directory, meta.get("network"), "the ACAE", threads)
        self.features = ACAEFeatures(field(meta, "spec", dict, directory))
        self.output = str(meta.get("output", "embedding"))
        self.batch = max(1, int(meta.get("batch") or 64))

    def transform(
        self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
    ) -> np.ndarray:
        if output != self.output:
            raise ConfigError(f"this ACAE export gives '{self.output}', not '{output}'")
        n = self.features.input_samples
        windows, owner = clip_windows(inputs, n)
        outs = []
        for s in range(0, len(windows), self.batch):
            x = np.stack([tile_crop(w, n) for w in windows[s : s + self.batch]])
            outs.append(self.network.run(self.features(x))[0])
        values = np.concatenate(outs)
        if values.ndim == 1:  # recon-error: one value per window
            return per_clip_mean(values[:, None], owner, len(inputs))[:, 0].astype(np.float64)
        return per_clip_mean(values, owner, len(inputs)).astype(np.float64)
