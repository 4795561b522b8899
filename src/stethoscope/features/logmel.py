"""Log-mel frame vectors of the official DCASE Task 2 AE baseline, computed in batches with torch.

Definition (fixtures/official_logmel/README.md): centred STFT with zero padding (librosa >= 0.9),
periodic Hann, |X|^2, librosa's Slaney mel filterbank, ``10*log10(max(mel, float eps))``, then
``n_frames`` consecutive frames concatenated frame-major with a hop of one frame.

Two choices keep it fast and small without changing a number:

* The stacked ``(T - n_frames + 1, n_frames * n_mels)`` matrix is a read-only strided *view* of the
  contiguous ``(T, n_mels)`` log-mel matrix (row i starts at frame i and runs on through the next
  frames, exactly the frame-major layout). The cache stores only ``(T, n_mels)``: 5x less disk.
* On CPU, where the C kernels are built (:mod:`stethoscope.features.native`), framing and the
  |X|^2 + mel product run there, clip by clip, straight from the int16 samples of a WAV file
  (:meth:`LogMel.compute_file`). The torch path below is the definition on GPU and the fallback:
  chunks of a few clips so the frame buffer stays in cache, the window applied while framing (no
  padded copy of the signal), |X|^2 from the squared real/imaginary pairs inside the mel product,
  and only the nonzero band of the filterbank multiplied.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stethoscope import SAMPLE_RATE, audio, wav
from stethoscope.features import native
from stethoscope.features.registry import FeatureExtractor, place, register_feature

LOG_FLOOR = sys.float_info.epsilon  # the baseline's floor before log10; no reference, no top_db


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


@register_feature("logmel")
class LogMel(FeatureExtractor):
    """Official AE-baseline vectors: (T - 4, 640) float32 per clip with the default config."""

    config_cls = LogMelConfig
    config: LogMelConfig
    #: Clips per FFT call on CPU: small enough that the frame buffer stays in the CPU cache.
    cpu_chunk: int = 4
    #: Mel bands per block of the band-limited mel product on CPU (0: one dense product).
    cpu_band_block: int = 16

    @property
    def dim(self) -> int:
        return self.config.n_mels * self.config.n_frames

    def n_frames_for(self, n_samples: int) -> int:
        """STFT frames of a clip, centred: 1 + n_samples // hop for the even n_fft used here."""
        c = self.config
        return 1 + (n_samples + 2 * (c.n_fft // 2) - c.n_fft) // c.hop_length

    def compute_batch(self, waves: list[np.ndarray], device: torch.device | str = "cpu"
                      ) -> list[np.ndarray]:
        return [self.stack(m) for m in self.log_mel_batch(waves, device)]

    def prepare(self) -> None:
        c = self.config
        if self._native_ok("cpu"):
            self._plan()
        else:
            _mel_blocks(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax,
                        2 if c.power == 2.0 else 1, self.cpu_band_block, "cpu")

    def prefers_files(self, device: torch.device | str) -> bool:
        return self._native_ok(torch.device(device).type)

    def compute_file(self, path: str | Path) -> np.ndarray:
        return self.stack(self.log_mel_file(path))

    def compute_stored(self, path: str | Path, out: np.ndarray | None = None) -> np.ndarray:
        return self.log_mel_file(path, out)

    def log_mel_file(self, path: str | Path, out: np.ndarray | None = None) -> np.ndarray:
        """(T, n_mels) log-mel of one file on CPU, into ``out[:T]`` when given and large enough.

        A mono 16-bit WAV at the configured rate goes from its int16 samples straight into the
        C kernels; any other file is decoded by :func:`~stethoscope.audio.load_audio` (mixing,
        resampling, its checks and errors) first. Without the kernels, the torch path.
        """
        c = self.config
        if not self._native_ok("cpu"):
            wave = audio.load_audio(path, c.sample_rate)
            return place(self.log_mel_batch([wave])[0], out)
        raw = wav.read_pcm16_raw(path)
        if (raw is not None and raw[0].ndim == 1 and raw[1] == c.sample_rate
                and raw[0].shape[0] >= audio.MIN_SAMPLES):
            samples = raw[0]  # a view of this thread's read buffer, used before the next read
        else:
            samples = audio.load_audio(path, c.sample_rate)
        return self._native_log_mel(samples, out)

    def storage_layout(self, n_bytes: int) -> tuple[int, int] | None:
        # at most one int16 sample per 2 bytes (the header only makes the bound looser)
        return self.n_frames_for(max(n_bytes // 2, 0)), self.config.n_mels

    def log_mel_batch(self, waves: list[np.ndarray], device: torch.device | str = "cpu"
                      ) -> list[np.ndarray]:
        """Contiguous (T, n_mels) float32 log-mel matrices, clips of equal length batched."""
        device = torch.device(device)
        if self._native_ok(device.type):
            return [self._native_log_mel(np.ascontiguousarray(w, np.float32)) for w in waves]
        out: list[np.ndarray | None] = [None] * len(waves)
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            groups.setdefault(int(w.shape[-1]), []).append(i)
        chunk = self.cpu_chunk if device.type == "cpu" else len(waves)
        for idx in groups.values():
            for s in range(0, len(idx), chunk):
                part = idx[s:s + chunk]
                x = torch.from_numpy(np.stack([np.asarray(waves[i], np.float32) for i in part]))
                mel = self._log_mel(x.to(device, non_blocking=True)).cpu().numpy()
                for j, i in enumerate(part):
                    out[i] = mel[j]
        return out  # type: ignore[return-value]

    def _native_ok(self, device_type: str) -> bool:
        return device_type == "cpu" and self.config.power == 2.0 and native.available()

    def _plan(self) -> native.Plan:
        """The C path's tables for this configuration, built once per config object."""
        c = self.config
        memo = self.__dict__.get("_plan_memo")
        if memo is None or memo[0] is not c:
            memo = self._plan_memo = (c, native.plan(
                sample_rate=c.sample_rate, n_fft=c.n_fft, hop=c.hop_length, n_mels=c.n_mels,
                fmin=c.fmin, fmax=c.fmax, floor=LOG_FLOOR, scale=20.0 / c.power))
        return memo[1]

    def _native_log_mel(self, samples: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        t = self.n_frames_for(samples.shape[0])
        slot = out[:t] if out is not None and out.shape[0] >= t else None
        return native.log_mel(samples, t, self._plan(), slot)

    def stack(self, log_mel: np.ndarray) -> np.ndarray:
        """Frame-major stacking as a zero-copy, read-only view of a (T, n_mels) array."""
        c = self.config
        log_mel = np.ascontiguousarray(log_mel)
        n_vec = log_mel.shape[0] - c.n_frames + 1
        if n_vec < 1:
            return np.empty((0, self.dim), dtype=np.float32)
        # Row i starts at frame i and runs on through the next frames. Built with the ndarray
        # constructor: sliding_window_view made the same view in 30 us, a fifth of a clip's
        # whole cost in the parent of multi-process extraction.
        item = log_mel.itemsize
        view = np.ndarray((n_vec, self.dim), log_mel.dtype, buffer=log_mel,
                          strides=(item * c.n_mels, item))
        view.flags.writeable = False
        return view

    def to_storage(self, feature: np.ndarray) -> np.ndarray:
        """(T, n_mels) back from the stacked vectors: rows' first frames + the last row's rest."""
        m = self.config.n_mels
        if feature.shape[0] == 0:  # fewer frames than n_frames: nothing to keep, stays empty
            return np.empty((0, m), dtype=np.float32)
        if (feature.dtype == np.float32 and feature.shape[1] == self.dim
                and feature.strides == (4 * m, 4)):
            # A view made by :meth:`stack`: the (T, n_mels) matrix is the memory it already spans,
            # so hand that out instead of copying it (75 us per 10 s clip when filling the cache).
            n_rows = feature.shape[0] + self.config.n_frames - 1
            return np.lib.stride_tricks.as_strided(feature, (n_rows, m), (4 * m, 4),
                                                   writeable=False)
        tail = feature[-1, m:].reshape(-1, m)
        return np.ascontiguousarray(np.concatenate([feature[:, :m], tail]), dtype=np.float32)

    def from_storage(self, stored: np.ndarray) -> np.ndarray:
        return self.stack(stored)

    # ------------------------------------------------------------------ torch core
    def _log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N) float32 waveforms -> (B, T, n_mels) float32 log-mel."""
        c = self.config
        frames = self._windowed_frames(x)
        spec = torch.fft.rfft(frames, dim=-1)  # (B, T, n_fft//2 + 1)
        del frames
        if c.power == 2.0:
            # |X|^2 = re^2 + im^2: square the interleaved pairs in place and let the mel matrix
            # (each row repeated twice) do the sum.
            z = torch.view_as_real(spec).square_().flatten(-2)
            rep = 2
        else:
            z = spec.abs().pow_(c.power)
            rep = 1
        blocks = _mel_blocks(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax, rep,
                             self.cpu_band_block if x.device.type == "cpu" else 0, str(x.device))
        flat = z.reshape(-1, z.shape[-1])  # 2-D products: BLAS takes the column slices in place
        mel = torch.cat([flat[:, k0:k1] @ w for k0, k1, w in blocks], dim=-1)
        mel = mel.view(*z.shape[:-1], c.n_mels)
        return mel.clamp_(min=LOG_FLOOR).log10_().mul_(20.0 / c.power)

    def _windowed_frames(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, n_fft) windowed frames of the zero-padded, centred signal, without padding it all.

        Interior frames are windowed straight from a strided view of the signal; only the few edge
        frames that reach into the padding are built from small zero-padded pieces.
        """
        c = self.config
        n_fft, hop, pad = c.n_fft, c.hop_length, c.n_fft // 2
        b, n = x.shape
        t_total = self.n_frames_for(n)
        win = _hann(n_fft, str(x.device))
        frames = torch.empty((b, t_total, n_fft), dtype=torch.float32, device=x.device)
        t0 = -(-pad // hop)  # first frame lying wholly inside the signal
        t1 = min(t_total - 1, (n + pad - n_fft) // hop)  # last such frame
        if t1 < t0:  # clip shorter than about two windows: pad it all
            full = F.pad(x, (pad, pad)).unfold(-1, n_fft, hop)[:, :t_total]
            return torch.mul(full, win, out=frames)
        start = t0 * hop - pad
        inner = x[:, start:].unfold(-1, n_fft, hop)[:, :t1 - t0 + 1]
        torch.mul(inner, win, out=frames[:, t0:t1 + 1])
        if t0 > 0:
            head = F.pad(x[:, :(t0 - 1) * hop - pad + n_fft], (pad, 0)).unfold(-1, n_fft, hop)
            torch.mul(head[:, :t0], win, out=frames[:, :t0])
        if t1 < t_total - 1:
            s = (t1 + 1) * hop - pad
            need = (t_total - 2 - t1) * hop + n_fft
            tail = F.pad(x[:, s:], (0, need - (n - s))).unfold(-1, n_fft, hop)
            torch.mul(tail[:, :t_total - 1 - t1], win, out=frames[:, t1 + 1:])
        return frames


@lru_cache(maxsize=8)
def _hann(n_fft: int, device: str) -> torch.Tensor:
    return torch.hann_window(n_fft, periodic=True, dtype=torch.float32, device=device)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
                   ) -> np.ndarray:
    """(n_mels, n_fft//2 + 1) float32 Slaney-scale, Slaney-normalised filterbank (librosa's)."""
    import librosa  # deferred: only the matrix is taken from librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                               fmax=fmax if fmax is not None else sample_rate / 2.0,
                               htk=False, norm="slaney", dtype=np.float32)


@lru_cache(maxsize=16)
def _mel_blocks(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None,
                rep: int, band_block: int, device: str) -> list[tuple[int, int, torch.Tensor]]:
    """Column ranges and transposed filterbank pieces so that ``cat(z[..., k0:k1] @ w)`` is the mel.

    Each block of ``band_block`` bands only multiplies the FFT bins it covers (the filterbank is
    banded), ``rep`` repeats each bin's row for the interleaved re/im input.
    """
    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).T  # (bins, mels)
    size = band_block if band_block > 0 else n_mels
    blocks = []
    for m0 in range(0, n_mels, size):
        part = fb[:, m0:m0 + size]
        nz = np.flatnonzero(np.any(part != 0, axis=1))
        k0, k1 = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 1)
        if band_block <= 0:
            k0, k1 = 0, fb.shape[0]
        w = np.repeat(part[k0:k1], rep, axis=0)
        blocks.append((k0 * rep, k1 * rep, torch.from_numpy(np.ascontiguousarray(w)).to(device)))
    return blocks
