"""The far microphone as a noise reference for the near one (a noise-aware AE for DCASE2026).

In a two-channel recording the far microphone hears the same environmental noise as the near one,
louder, and the machine quieter. Per mel band, the near channel's power is regressed on the far
channel's over the normal training frames of a machine type: the slope g_f is how much of the far
microphone's fluctuating power leaks into the near one. Before the log, g_f times the far power is
subtracted from the near power (spectral subtraction with a learned gain), leaving at least
:data:`SPECTRAL_FLOOR` of the near power in every band, and the autoencoder works on what is left.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stethoscope.features.logmel import LOG_FLOOR, LogMel, LogMelConfig

#: the share of the near channel's power a band keeps at least (-10 dB): no negative power, and
#: no band emptied by an over-estimated gain
SPECTRAL_FLOOR = 0.1


def _bands(vectors: np.ndarray, extractor: LogMel) -> tuple[np.ndarray, np.ndarray]:
    """(near, far) mel power (T, n_mels) from a clip's stacked two-channel log-mel vectors."""
    rows = extractor.to_storage(np.asarray(vectors, dtype=np.float32)).astype(np.float64)
    m = extractor.config.n_mels
    power = np.power(10.0, rows * (extractor.config.power / 20.0))
    return power[:, :m], power[:, m:]


def fit_gains(clips: Sequence[np.ndarray]) -> np.ndarray:
    """(n_mels,) least-squares slope of near power on far power per band, never negative."""
    two = LogMel(LogMelConfig(channel="both"))
    near, far = (np.concatenate(parts) for parts in zip(*(_bands(v, two) for v in clips)))
    far_c = far - far.mean(axis=0)
    slope = (far_c * (near - near.mean(axis=0))).sum(axis=0) / np.maximum((far_c**2).sum(0), 1e-30)
    return np.maximum(slope, 0.0)


def denoise(vectors: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """A clip's near-channel log-mel vectors with ``gains`` x far power taken out before the log."""
    two = LogMel(LogMelConfig(channel="both"))
    near, far = _bands(vectors, two)
    cleaned = np.maximum(near - gains * far, SPECTRAL_FLOOR * near)
    one = LogMel(LogMelConfig(channel="near"))
    rows = np.log10(np.maximum(cleaned, LOG_FLOOR)) * (20.0 / one.config.power)
    return np.ascontiguousarray(one.stack(rows.astype(np.float32)))
