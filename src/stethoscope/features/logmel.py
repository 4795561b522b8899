"""Log-mel frame vectors of the official DCASE Task 2 AE baseline, computed in batches with torch.

Definition (fixtures/official_logmel/README.md): centred STFT with zero padding (librosa >= 0.10),
periodic Hann, |X|^2, librosa's Slaney mel filterbank, ``10*log10(max(mel, float eps))``, then
``n_frames`` consecutive frames concatenated frame-major with a hop of one frame. The same torch
code runs on CPU and GPU.

The stacked ``(T - n_frames + 1, n_frames * n_mels)`` matrix is a read-only strided *view* of the
contiguous ``(T, n_mels)`` log-mel matrix (row i starts at frame i and runs on through the next
frames, exactly the frame-major layout), and the cache stores only ``(T, n_mels)``: 5x less disk.
The stacking and the blocked mel product are :mod:`stethoscope.dsp.logmel`'s, which the torch-free
ONNX runtime computes the same features with.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from stethoscope import SAMPLE_RATE
from stethoscope.dsp.logmel import LOG_FLOOR, mel_blocks, stack_frames, unstack_frames
from stethoscope.features.base import FeatureExtractor, register_feature


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2, as the baseline's fmax=None
    power: float = 2.0
    n_frames: int = 5
    #: what is read from a multi-channel file (audio.read_audio); "both" gives each frame the
    #: near channel's bands followed by the far channel's
    channel: str = "mix"


@register_feature("logmel")
class LogMel(FeatureExtractor):
    """Official AE-baseline vectors: (T - 4, 640) float32 per clip with the default config."""

    config_cls = LogMelConfig
    config: LogMelConfig
    #: 2: torch.stft and the blocked mel product (values within 1e-5 dB of version 1's C kernels,
    #: but not bit-identical: cached arrays of version 1 are not mixed in)
    version = 2
    #: Clips per STFT call on CPU: a few, so the frames and spectra stay in the CPU's caches.
    cpu_chunk: int = 4

    @property
    def width(self) -> int:
        """Values per frame: the mel bands of each channel kept."""
        return self.config.n_mels * (2 if self.config.channel == "both" else 1)

    @property
    def dim(self) -> int:
        return self.width * self.config.n_frames

    def n_frames_for(self, n_samples: int) -> int:
        """STFT frames of a clip, centred (n_fft // 2 zeros at each end)."""
        c = self.config
        return 1 + (n_samples + 2 * (c.n_fft // 2) - c.n_fft) // c.hop_length

    def compute_batch(
        self, waves: list[np.ndarray], device: torch.device | str = "cpu"
    ) -> list[np.ndarray]:
        return [self.stack(m) for m in self.log_mel_batch(waves, device)]

    def log_mel_batch(
        self, waves: list[np.ndarray], device: torch.device | str = "cpu"
    ) -> list[np.ndarray]:
        """Contiguous (T, n_mels) float32 log-mel matrices; clips of equal length go together."""
        device = torch.device(device)
        out: list[np.ndarray] = [np.empty(0)] * len(waves)
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            groups.setdefault(int(w.shape[-1]), []).append(i)
        chunk = self.cpu_chunk if device.type == "cpu" else len(waves)
        for idx in groups.values():
            for s in range(0, len(idx), chunk):
                part = idx[s : s + chunk]
                x = torch.from_numpy(np.stack([np.asarray(waves[i], np.float32) for i in part]))
                b, n = x.shape[0], x.shape[-1]  # (B, N), or (B, channels, N)
                mel = self.log_mel(x.reshape(-1, n).to(device, non_blocking=True))
                if x.ndim == 3:  # (B * C, T, M) -> (B, T, C * M): a frame's channels side by side
                    mel = mel.view(b, x.shape[1], -1, mel.shape[-1]).transpose(1, 2)
                    mel = mel.reshape(b, -1, x.shape[1] * mel.shape[-1])
                mel_np = mel.contiguous().cpu().numpy()
                for j, i in enumerate(part):
                    out[i] = mel_np[j]
        return out

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N) float32 waveforms -> (B, T, n_mels) float32 log-mel, on ``x``'s device."""
        c = self.config
        spec = torch.stft(
            x,
            c.n_fft,
            c.hop_length,
            window=_hann(c.n_fft, x.device),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # (B, bins, T)
        if c.power == 2.0:
            z = spec.real.square().add_(spec.imag.square())
        else:
            z = spec.abs().pow_(c.power)
        flat = z.transpose(1, 2).reshape(-1, z.shape[1])  # (B * T, bins)
        blocks = _mel_blocks(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax, x.device)
        mel = torch.cat([flat[:, k0:k1] @ w for k0, k1, w in blocks], dim=-1)
        mel = mel.view(x.shape[0], -1, c.n_mels)  # (B, T, mels), contiguous
        return mel.clamp_(min=LOG_FLOOR).log10_().mul_(20.0 / c.power)

    def stack(self, log_mel: np.ndarray) -> np.ndarray:
        """Frame-major stacking as a zero-copy, read-only view of a (T, width) array."""
        return stack_frames(log_mel, self.config.n_frames)

    def to_storage(self, feature: np.ndarray) -> np.ndarray:
        """(T, width) back from the stacked vectors: rows' first frames + the last row's rest."""
        return unstack_frames(feature, self.width, self.config.n_frames)

    def from_storage(self, stored: np.ndarray) -> np.ndarray:
        return self.stack(stored)

    def stored_problem(self, stored: np.ndarray) -> str | None:
        m = self.width
        if stored.dtype != np.float32 or stored.ndim != 2 or stored.shape[1] != m:
            return f"expected float32 (frames, {m}), found {stored.dtype} {stored.shape}"
        return None


@lru_cache(maxsize=8)
def _hann(n_fft: int, device: torch.device) -> torch.Tensor:
    return torch.hann_window(n_fft, periodic=True, dtype=torch.float32, device=device)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> np.ndarray:
    """(n_mels, n_fft//2 + 1) float32 Slaney-scale, Slaney-normalised filterbank (librosa's)."""
    import librosa  # deferred: only the matrix is taken from librosa

    return librosa.filters.mel(
        sr=sample_rate,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax if fmax is not None else sample_rate / 2.0,
        htk=False,
        norm="slaney",
        dtype=np.float32,
    )


@lru_cache(maxsize=8)
def _mel_blocks(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None, device: torch.device
) -> list[tuple[int, int, torch.Tensor]]:
    """The filterbank's blocks (:func:`stethoscope.dsp.logmel.mel_blocks`) on ``device``."""
    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    return [(k0, k1, torch.from_numpy(w).to(device)) for k0, k1, w in mel_blocks(fb)]
