"""How a clip of any length meets a network of one input length, and how window outputs pool.

A clip longer than the input length is cut into the fewest evenly spaced windows that cover it
(:func:`window_starts`); a shorter one is tiled or zero-padded up to the length (:func:`fit_length`,
:func:`tile_crop`). A clip's output is the mean over its windows (:func:`per_clip_mean`), of
length-normalised embeddings where the caller wants unit vectors (:func:`normalise`). The
dual-branch CNN also reads several crops ("views") of each clip (:func:`view_crops`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

VIEW_MODES = ("crops", "tiled")


def window_starts(n_samples: int, length: int) -> list[int]:
    """Start offsets of the fewest evenly spaced ``length``-sample windows that cover a clip of
    ``n_samples`` (one window, from 0, when the clip is not longer than ``length``)."""
    if n_samples <= length:
        return [0]
    count = math.ceil(n_samples / length)
    return [int(round(s)) for s in np.linspace(0, n_samples - length, count)]


def clip_windows(waves: Sequence[np.ndarray], length: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each clip from each of its window starts on (views, not copies; the caller cuts or tiles
    them to ``length``), and the clip index of every window."""
    out, owner = [], []
    for i, w in enumerate(waves):
        w = np.asarray(w, dtype=np.float32).reshape(-1)
        for start in window_starts(w.shape[0], length):
            out.append(w[start:])
            owner.append(i)
    return out, np.asarray(owner, dtype=np.int64)


def fit_length(
    wave: np.ndarray, length: int, mode: str = "tile", offset: int = 0
) -> tuple[np.ndarray, int]:
    """Bring a 1-D clip to ``length`` samples; returns it and its real (non-padded) length.

    ``tile`` repeats the clip and reads ``length`` samples from ``offset`` (modulo the clip length),
    so every sample is real signal. ``pad`` crops from the start or zero-pads at the end.
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    n = wave.shape[0]
    if n == 0:
        raise ValueError("cannot fit an empty waveform")
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    if mode == "tile":
        start = int(offset) % n
        if start + length <= n:  # a window of a long clip: no need to tile it all first
            return np.array(wave[start : start + length]), length
        reps = int(np.ceil((start + length) / n))
        return np.ascontiguousarray(np.tile(wave, reps)[start : start + length]), length
    if mode == "pad":
        if n >= length:
            return np.ascontiguousarray(wave[:length]), length
        out = np.zeros(length, dtype=np.float32)
        out[:n] = wave
        return out, n
    raise ValueError(f"unknown fit mode {mode!r} (use 'tile' or 'pad')")


def tile_crop(wave: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """Tile (if short) or crop (if long) a 1-D waveform to ``n`` samples, starting at ``offset``."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if wave.size == 0:
        raise ValueError("empty waveform")
    offset = int(offset) % wave.size
    if offset + n > wave.size:
        reps = int(np.ceil((offset + n) / wave.size))
        wave = np.tile(wave, reps)
    return np.ascontiguousarray(wave[offset : offset + n])


def view_crops(
    wave: np.ndarray,
    n_views: int,
    crop_len: int | None,
    length: int,
    mode: str = "crops",
    fit_mode: str = "tile",
) -> list[tuple[np.ndarray, int]]:
    """``n_views`` views of one clip, each brought to the model's ``length`` by ``fit_mode``.

    ``"crops"``: evenly spaced overlapping crops of ``crop_len`` samples (half the clip when None),
    so every view holds other content. ``"tiled"``: the whole clip read from evenly spaced offsets
    of its tiling; each view is then a circular shift of the same signal, which the spectrum branch
    (an FFT magnitude) cannot tell apart, so the views nearly coincide.
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    n = wave.shape[0]
    if mode == "tiled":
        return [fit_length(wave, length, "tile", offset=(v * n) // n_views) for v in range(n_views)]
    if mode != "crops":
        raise ValueError(f"views must be one of {VIEW_MODES}, not {mode!r}")
    crop = min(n, crop_len if crop_len is not None else max(1, n // 2))
    starts = np.linspace(0, n - crop, n_views).round().astype(int)
    return [fit_length(wave[s : s + crop], length, fit_mode) for s in starts]


def crop_samples(crop_seconds: float | None, sample_rate: int) -> int | None:
    """The views' crop length in samples (None: half of each clip)."""
    return None if crop_seconds is None else max(1, int(round(crop_seconds * sample_rate)))


def normalise(e: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), in the input's dtype."""
    return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def per_clip_mean(values: np.ndarray, owner: np.ndarray, n_clips: int) -> np.ndarray:
    """Window outputs averaged per clip (summed in float64, returned as float32); unchanged when
    every clip had one window."""
    if len(owner) == n_clips:
        return values
    sums = np.zeros((n_clips, *values.shape[1:]), dtype=np.float64)
    np.add.at(sums, owner, values)
    counts = np.bincount(owner, minlength=n_clips).reshape(-1, *([1] * (values.ndim - 1)))
    return (sums / counts).astype(np.float32)
