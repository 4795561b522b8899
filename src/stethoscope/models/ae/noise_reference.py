"""The far microphone as a noise reference for the near one, with the log-mel settings the AE reads.

The computation is :mod:`stethoscope.dsp.noise_reference` (numpy, shared with the ONNX runtime);
this module binds it to the log-mel features' configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stethoscope.dsp import noise_reference as _dsp
from stethoscope.features.logmel import LogMelConfig

SPECTRAL_FLOOR = _dsp.SPECTRAL_FLOOR
_CONFIG = LogMelConfig()


def fit_gains(clips: Sequence[np.ndarray]) -> np.ndarray:
    """(n_mels,) least-squares slope of near power on far power per band, never negative."""
    c = _CONFIG
    return _dsp.fit_gains(clips, n_mels=c.n_mels, n_frames=c.n_frames, power=c.power)


def denoise(vectors: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """A clip's near-channel log-mel vectors with ``gains`` x far power taken out before the log."""
    c = _CONFIG
    return _dsp.denoise(vectors, gains, n_mels=c.n_mels, n_frames=c.n_frames, power=c.power)
