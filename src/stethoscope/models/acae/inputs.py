"""ACAE input features: time-averaged log magnitude STFT of a fixed-length waveform (SPEC 4.3).

The report's "averaging strategy based on the time window" is a centred moving average over
``avg_window`` frames of the log spectrogram: it smooths out short transients (clicks, impacts of
the factory background) while keeping the stationary machine signature the autoencoder must model.
Averaging happens in the log domain (a geometric mean of magnitudes), so one loud transient frame
cannot dominate its neighbours the way it would in a linear-magnitude average.

The network needs one input length. Every clip is brought to ``input_samples`` by
:func:`fit_length`: shorter clips are tiled (repeated end to end, which keeps a stationary sound
stationary, unlike zero padding that would create an artificial silence for the autoencoder to
learn), longer clips are cropped. ``offset`` lets callers take several views of one clip (e.g. crops
at different positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stethoscope import SAMPLE_RATE
from stethoscope.dsp.windows import tile_crop as fit_length

__all__ = [
    "AMIN",
    "FeatureSpec",
    "acae_features",
    "batch_features",
    "fit_length",
    "log_spectrogram",
    "moving_average",
    "stack_waves",
]

#: Amplitude floor of the log (as librosa's ``amplitude_to_db``): -100 dB, so digital silence
#: stays finite.
AMIN = 1e-5


@dataclass(frozen=True)
class FeatureSpec:
    """What the feature extractor needs; derived from the ACAE configuration."""

    input_samples: int
    n_fft: int = 1024
    hop: int = 512
    avg_window: int = 3
    max_freq_hz: float | None = None  # keep STFT bins up to this frequency (None: Nyquist)
    freq_bins: int | None = 128  # average-pool the kept bins to this many (None: no pooling)
    sr: int = SAMPLE_RATE

    def kept_bins(self) -> int:
        """Number of STFT bins at or below ``max_freq_hz``."""
        n = self.n_fft // 2 + 1
        if self.max_freq_hz is None:
            return n
        return max(1, min(n, int(np.floor(self.max_freq_hz * self.n_fft / self.sr)) + 1))

    def shape(self) -> tuple[int, int]:
        """(frequency bins, frames) of one clip's feature map."""
        n_freq = self.kept_bins()
        if self.freq_bins is not None:
            n_freq = min(n_freq, self.freq_bins)
        n_frames = 1 + self.input_samples // self.hop  # centred STFT
        return n_freq, n_frames


def stack_waves(waves: Sequence[np.ndarray], n: int, offset: int = 0) -> torch.Tensor:
    """(B, n) float32 tensor of waveforms brought to length ``n`` (see :func:`fit_length`)."""
    return torch.from_numpy(np.stack([fit_length(w, n, offset) for w in waves]))


def moving_average(x: torch.Tensor, window: int) -> torch.Tensor:
    """Centred moving average over the last axis, same length; edges average only the frames that
    exist.

    ``window`` must be odd so the average is centred on each frame; 1 returns ``x`` unchanged.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"avg_window must be a positive odd number, got {window}")
    if window == 1:
        return x
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-1])
    out = F.avg_pool1d(
        flat, kernel_size=window, stride=1, padding=window // 2, count_include_pad=False
    )
    return out.reshape(shape)


def log_spectrogram(wave: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """(B, n) waveforms -> (B, F, T) log magnitude STFT (dB), cut and pooled in frequency."""
    window = torch.hann_window(spec.n_fft, device=wave.device, dtype=wave.dtype)
    stft = torch.stft(
        wave,
        n_fft=spec.n_fft,
        hop_length=spec.hop,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    mag = stft.abs()[:, : spec.kept_bins(), :]
    if spec.freq_bins is not None and spec.freq_bins < mag.shape[1]:
        # Pool magnitudes over adjacent bins (B, F, T) -> (B, freq_bins, T): linear-frequency
        # resolution reduced for speed, band energies kept.
        mag = F.adaptive_avg_pool1d(mag.transpose(1, 2), spec.freq_bins).transpose(1, 2)
    return 20.0 * torch.log10(mag.clamp_min(AMIN))


def acae_features(wave: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """(B, n) waveforms -> (B, F, T) time-averaged log magnitude STFT (before standardisation)."""
    return moving_average(log_spectrogram(wave, spec), spec.avg_window)


@torch.no_grad()
def batch_features(
    waves: Sequence[np.ndarray],
    spec: FeatureSpec,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    offset: int = 0,
) -> torch.Tensor:
    """(N, F, T) features of many clips, computed in batches on ``device``, returned on the CPU."""
    out = []
    for i in range(0, len(waves), batch_size):
        chunk = stack_waves(waves[i : i + batch_size], spec.input_samples, offset)
        out.append(acae_features(chunk.to(device), spec).float().cpu())
    if not out:
        f, t = spec.shape()
        return torch.zeros((0, f, t))
    return torch.cat(out)
