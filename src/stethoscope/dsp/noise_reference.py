"""The far microphone as a noise reference for the near one (a noise-aware AE for DCASE2026).

In a two-channel recording the far microphone hears the same environmental noise as the near one,
louder, and the machine quieter. Per mel band, the near channel's power is regressed on the far
channel's over the normal training frames of a machine type: the slope g_f is how much of the far
microphone's fluctuating power leaks into the near one. Before the log, g_f times the far power is
subtracted from the near power (spectral subtraction with a learned gain), leaving at least
:data:`SPECTRAL_FLOOR` of the near power in every band, and the autoencoder works on what is left.

The input is a clip's two-channel log-mel vectors (each frame: the near channel's ``n_mels`` bands,
then the far channel's; ``n_frames`` frames stacked), as :mod:`stethoscope.dsp.logmel` makes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stethoscope.dsp.logmel import LOG_FLOOR, stack_frames, unstack_frames

#: the share of the near channel's power a band keeps at least (-10 dB): no negative power, and
#: no band emptied by an over-estimated gain
SPECTRAL_FLOOR = 0.1


def bands(
    vectors: np.ndarray, n_mels: int, n_frames: int, power: float
) -> tuple[np.ndarray, np.ndarray]:
    """(near, far) mel power (T, n_mels) from a clip's stacked two-channel log-mel vectors."""
    rows = unstack_frames(np.asarray(vectors, dtype=np.float32), 2 * n_mels, n_frames)
    lin = np.power(10.0, rows.astype(np.float64) * (power / 20.0))
    return lin[:, :n_mels], lin[:, n_mels:]


def fit_gains(
    clips: Sequence[np.ndarray], n_mels: int = 128, n_frames: int = 5, power: float = 2.0
) -> np.ndarray:
    """(n_mels,) least-squares slope of near power on far power per band, never negative."""
    near, far = (
        np.concatenate(parts) for parts in zip(*(bands(v, n_mels, n_frames, power) for v in clips))
    )
    far_c = far - far.mean(axis=0)
    slope = (far_c * (near - near.mean(axis=0))).sum(axis=0) / np.maximum((far_c**2).sum(0), 1e-30)
    return np.maximum(slope, 0.0)


def denoise(
    vectors: np.ndarray, gains: np.ndarray, n_mels: int = 128, n_frames: int = 5, power: float = 2.0
) -> np.ndarray:
    """A clip's near-channel log-mel vectors with ``gains`` x far power taken out before the log."""
    near, far = bands(vectors, n_mels, n_frames, power)
    cleaned = np.maximum(near - gains * far, SPECTRAL_FLOOR * near)
    rows = np.log10(np.maximum(cleaned, LOG_FLOOR)) * (20.0 / power)
    return np.ascontiguousarray(stack_frames(rows.astype(np.float32), n_frames))
