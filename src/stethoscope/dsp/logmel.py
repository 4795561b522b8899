"""The log-mel frame vectors of the official AE baseline, in numpy.

The definition (fixtures/official_logmel/README.md) is the one :mod:`stethoscope.features.logmel`
computes with torch: centred STFT with zero padding, periodic Hann, |X|^power, the Slaney mel
filterbank (taken as an array: building it is librosa's job, done once, when a model is exported),
``(20 / power) * log10(max(mel, float eps))``, then ``n_frames`` consecutive frames concatenated
frame-major with a hop of one frame. Both paths share the frame stacking and the blocked mel
product from here, so they differ only in the FFT's float32 rounding.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

LOG_FLOOR = sys.float_info.epsilon  # the baseline's floor before log10; no reference, no top_db
#: Mel bands per block of the filterbank product (see :func:`mel_blocks`).
MEL_BLOCK = 16


def stack_frames(log_mel: np.ndarray, n_frames: int) -> np.ndarray:
    """(T, width) frames -> (T - n_frames + 1, n_frames * width) vectors, frame-major, as a
    zero-copy, read-only view (row i starts at frame i and runs on through the next frames)."""
    log_mel = np.ascontiguousarray(log_mel)
    width = log_mel.shape[1]
    n_vec = log_mel.shape[0] - n_frames + 1
    if n_vec < 1:
        return np.empty((0, width * n_frames), dtype=np.float32)
    # The ndarray constructor makes this view several times faster than as_strided, which matters
    # on warm-cache hits.
    item = log_mel.itemsize
    view = np.ndarray(
        (n_vec, width * n_frames), log_mel.dtype, buffer=log_mel, strides=(item * width, item)
    )
    view.flags.writeable = False
    return view


def unstack_frames(feature: np.ndarray, width: int, n_frames: int) -> np.ndarray:
    """(T, width) frames back from stacked vectors: the rows' first frames + the last row's rest."""
    m = width
    if feature.shape[0] == 0:  # fewer frames than n_frames: nothing to keep, stays empty
        return np.empty((0, m), dtype=np.float32)
    made_by_stack = feature.strides == (4 * m, 4)
    if feature.dtype == np.float32 and feature.shape[1] == m * n_frames and made_by_stack:
        # A view made by :func:`stack_frames`: the frames are the memory it already spans.
        n_rows = feature.shape[0] + n_frames - 1
        return np.lib.stride_tricks.as_strided(feature, (n_rows, m), (4 * m, 4), writeable=False)
    tail = feature[-1, m:].reshape(-1, m)
    return np.ascontiguousarray(np.concatenate([feature[:, :m], tail]), dtype=np.float32)


def mel_blocks(filterbank: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """The transposed (n_mels, bins) filterbank cut into blocks of :data:`MEL_BLOCK` bands, each
    with the range ``[k0, k1)`` of FFT bins it covers: ``cat([z[:, k0:k1] @ w ...])`` is
    ``z @ fb.T``.

    Each mel filter spans a few bins only, so the blocks skip the zeros of the full matrix (about a
    third of the CPU time of the whole log-mel) and change nothing but the order of the sums.
    """
    fb = np.asarray(filterbank, dtype=np.float32).T  # (bins, mels)
    blocks = []
    for m0 in range(0, fb.shape[1], MEL_BLOCK):
        part = fb[:, m0 : m0 + MEL_BLOCK]
        nz = np.flatnonzero(np.any(part != 0, axis=1))
        k0, k1 = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 1)
        blocks.append((k0, k1, np.ascontiguousarray(part[k0:k1])))
    return blocks


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (as ``torch.hann_window(n, periodic=True)``), float32 values held in
    float64: windowed float32 frames are then exact in float64, the type numpy's FFT is fast in."""
    return (
        (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32).astype(np.float64)
    )


def rfft(x: np.ndarray) -> np.ndarray:
    """The real FFT along the last axis, in float64 (numpy's float32 FFT is several times slower;
    torch's float32 FFT differs from it by float32 rounding only)."""
    return np.fft.rfft(np.asarray(x, dtype=np.float64), axis=-1)


def frames(wave: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(..., T, n_fft) read-only view of the hop-spaced, non-centred frames of ``wave``."""
    view = np.lib.stride_tricks.sliding_window_view(wave, n_fft, axis=-1)
    return view[..., ::hop, :]


class _Scratch(threading.local):
    """One thread's working arrays, reused from clip to clip: a fresh multi-megabyte array per
    clip costs page faults as the allocator hands its memory back to the system and takes it
    again, several times the arithmetic on some machines (virtual machines that return freed
    pages to their host)."""

    capacity = 0
    padded: np.ndarray
    frames: np.ndarray
    spec: np.ndarray
    power: np.ndarray
    part: np.ndarray
    z: np.ndarray


class NumpyLogMel:
    """Log-mel frames of 1-D waveforms, or of (channels, samples) ones (each frame's channels
    side by side), with a given filterbank. Safe to share between threads."""

    def __init__(
        self,
        filterbank: np.ndarray,
        n_fft: int = 1024,
        hop_length: int = 512,
        power: float = 2.0,
        n_frames: int = 5,
    ) -> None:
        if filterbank.ndim != 2 or filterbank.shape[1] != n_fft // 2 + 1:
            raise ValueError(
                f"filterbank of shape {filterbank.shape} does not fit n_fft {n_fft} "
                f"({n_fft // 2 + 1} bins)"
            )
        self.n_fft, self.hop, self.power, self.n_frames = n_fft, hop_length, power, n_frames
        self.n_mels = filterbank.shape[0]
        self.window = hann(n_fft)
        self.blocks = mel_blocks(filterbank)
        self._scratch = _Scratch()

    def _buffers(self, n_frames: int) -> _Scratch:
        s = self._scratch
        if s.capacity < n_frames:
            bins = self.n_fft // 2 + 1
            s.capacity = n_frames
            s.padded = np.empty((n_frames - 1) * self.hop + self.n_fft, dtype=np.float32)
            s.frames = np.empty((n_frames, self.n_fft))
            s.spec = np.empty((n_frames, bins), dtype=np.complex128)
            s.power, s.part = np.empty((n_frames, bins)), np.empty((n_frames, bins))
            s.z = np.empty((n_frames, bins), dtype=np.float32)
        return s

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """(T, n_mels) float32 log-mel of a 1-D waveform; (T, C * n_mels) of (C, samples)."""
        x = np.asarray(wave, dtype=np.float32)
        if x.ndim == 2:
            return np.concatenate([self.log_mel(ch) for ch in x], axis=1)
        pad, n = self.n_fft // 2, x.shape[0]
        t = 1 + n // self.hop  # centred frames
        b = self._buffers(t)
        padded = b.padded[: (t - 1) * self.hop + self.n_fft]
        padded[:pad] = 0.0
        padded[pad : pad + n] = x
        padded[pad + n :] = 0.0
        fr, spec, power, part, z = b.frames[:t], b.spec[:t], b.power[:t], b.part[:t], b.z[:t]
        np.multiply(frames(padded, self.n_fft, self.hop), self.window, out=fr)
        np.fft.rfft(fr, axis=-1, out=spec)
        if self.power == 2.0:
            np.square(spec.real, out=power)
            power += np.square(spec.imag, out=part)
        else:
            np.power(np.abs(spec, out=power), self.power, out=power)
        z[...] = power
        mel = np.concatenate([z[:, k0:k1] @ w for k0, k1, w in self.blocks], axis=-1)
        np.maximum(mel, np.float32(LOG_FLOOR), out=mel)
        # ln scaled to log10: numpy's float32 log is vectorised, its log10 several times slower
        np.log(mel, out=mel)
        mel *= np.float32(20.0 / (self.power * np.log(10.0)))
        return mel

    def vectors(self, wave: np.ndarray) -> np.ndarray:
        """The stacked frame vectors of one clip (see :func:`stack_frames`)."""
        return stack_frames(self.log_mel(wave), self.n_frames)
