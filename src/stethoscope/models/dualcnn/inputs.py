"""Input features of the dual-branch CNN, computed in torch so they run batched on the GPU.

The network sees fixed-length waveforms (B, L). Clips are brought to L by tiling (the default, as in
Wilkinghoff's systems: no silence is introduced) or by zero padding; in both cases the real length
of each clip travels with it so the spectrogram normalisation can ignore padding (SPEC 3).

- Spectrogram branch: |STFT| (Hann 1024, hop 512, not centred, 513 bins) minus the temporal mean of
  each bin over the frames that lie entirely inside the real signal. Frames that touch the padding
  are set to 0 after the subtraction (= the clip's mean frame), so padding adds nothing to the
  max-pool over time.
- Spectrum branch: |rFFT| of the whole fixed-length waveform, bins up to ``fmax`` (8 kHz).
"""

from __future__ import annotations

from typing import overload

import numpy as np
import torch
from torch import nn

from stethoscope.dsp.windows import fit_length

__all__ = [
    "HOP",
    "N_FFT",
    "SpectrogramFeature",
    "SpectrumFeature",
    "fit_length",
    "n_frames",
    "n_spectrum_bins",
]

N_FFT = 1024
HOP = 512


@overload
def n_frames(n_samples: int, n_fft: int = ..., hop: int = ...) -> int: ...


@overload
def n_frames(n_samples: torch.Tensor, n_fft: int = ..., hop: int = ...) -> torch.Tensor: ...


def n_frames(
    n_samples: int | torch.Tensor, n_fft: int = N_FFT, hop: int = HOP
) -> int | torch.Tensor:
    """Number of complete (non-centred) STFT frames in ``n_samples``; at least 1 for real clips."""
    if isinstance(n_samples, torch.Tensor):
        return torch.clamp(torch.div(n_samples - n_fft, hop, rounding_mode="floor") + 1, min=1)
    return max(1, (int(n_samples) - n_fft) // hop + 1)


def n_spectrum_bins(length: int, sample_rate: int, fmax: float) -> int:
    """rFFT bins of a ``length``-sample waveform whose frequency is at most ``fmax``."""
    return min(length // 2 + 1, int(np.floor(fmax * length / sample_rate)) + 1)


class SpectrogramFeature(nn.Module):
    """|STFT| with the temporal mean of each bin (real frames only) removed: (B, 513, T).

    The window is made on the input's device when first needed, not kept as a buffer: the module
    holds no tensor that a saved model does not, so loading can build it on the meta device.
    """

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self._windows: dict[torch.device, torch.Tensor] = {}

    def window(self, device: torch.device) -> torch.Tensor:
        if device not in self._windows:
            self._windows[device] = torch.hann_window(self.n_fft, periodic=True, device=device)
        return self._windows[device]

    def forward(self, wave: torch.Tensor, real_len: torch.Tensor) -> torch.Tensor:
        wave = wave.float()
        spec = torch.stft(
            wave,
            self.n_fft,
            self.hop,
            window=self.window(wave.device),
            center=False,
            return_complex=True,
        ).abs()  # (B, F, T)
        t = spec.shape[2]
        n_real = n_frames(real_len.to(spec.device), self.n_fft, self.hop).clamp(max=t)
        mask = torch.arange(t, device=spec.device)[None, :] < n_real[:, None]
        mask = mask.to(spec.dtype)[:, None, :]
        mean = (spec * mask).sum(2, keepdim=True) / n_real[:, None, None].to(spec.dtype)
        return (spec - mean) * mask


class SpectrumFeature(nn.Module):
    """|rFFT| of the whole waveform up to ``fmax``: (B, n_bins)."""

    def __init__(self, length: int, sample_rate: int = 16_000, fmax: float = 8000.0) -> None:
        super().__init__()
        self.n_bins = n_spectrum_bins(length, sample_rate, fmax)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(wave.float(), dim=-1).abs()[:, : self.n_bins]
