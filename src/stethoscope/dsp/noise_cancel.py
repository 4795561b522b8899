"""The far microphone as a noise reference, cancelled from the near one (two-microphone ANC).

In a near/far recording (DCASE2026) the environmental noise reaches both microphones from the same
sources: at the near one later and weaker than at the far one, which hears little of the machine.
Per clip, a short FIR filter h that best predicts the near signal from the far one (least squares,
the Wiener solution over the whole clip) models that noise path; ``near - h * far`` keeps what the
far microphone cannot explain: the machine, the diffuse site background and the self-noise. This is
Widrow's adaptive noise cancelling solved once per clip, so it follows microphones that are never
put back in quite the same place. The far microphone's small share of the machine makes h remove
a little of the machine too (its level there is far below the noise's).

Numpy only, as the torch-free runtime reads audio through the same code.
"""

from __future__ import annotations

import numpy as np

#: filter taps before and after lag 0, in samples at 16 kHz: the noise may reach the near
#: microphone up to 7 ms after the far one (112 taps), a little before it (16)
LAGS_BEFORE = 16
LAGS_AFTER = 112
#: diagonal loading of the normal equations, relative to the far signal's power per tap
REGULARISATION = 1e-3


def fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= ``n``: numpy's FFT is fastest on such lengths, and a power of two
    alone can nearly double the work (what ``scipy.fft.next_fast_len`` gives, kept numpy-only)."""
    best = 1 << max(0, int(n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def cancel(
    near: np.ndarray,
    far: np.ndarray,
    lags_before: int = LAGS_BEFORE,
    lags_after: int = LAGS_AFTER,
    regularisation: float = REGULARISATION,
) -> np.ndarray:
    """``near`` minus the part of it a FIR filter of ``far`` predicts (float32, same length)."""
    d = np.asarray(near, dtype=np.float64)
    x = np.asarray(far, dtype=np.float64)
    if d.shape != x.shape or d.ndim != 1:
        raise ValueError(f"near and far must be 1-D of equal length, not {d.shape}, {x.shape}")
    n = d.shape[0]
    lags = np.arange(-lags_before, lags_after)
    nfft = fast_length(n + lags.size)
    spec_x = np.fft.rfft(x, nfft)
    auto = np.fft.irfft(spec_x * np.conj(spec_x), nfft)  # auto[k] = sum_t x(t) x(t - k)
    cross = np.fft.irfft(np.fft.rfft(d, nfft) * np.conj(spec_x), nfft)  # sum_t d(t) x(t - k)
    normal = auto[np.abs(lags[:, None] - lags[None, :])]  # Toeplitz: lags are shifts of x
    load = regularisation * auto[0] / lags.size
    if load <= 0.0:  # a silent far channel explains nothing
        return d.astype(np.float32)
    taps = np.linalg.solve(normal + load * np.eye(lags.size), cross[lags % nfft])
    kernel = np.zeros(nfft)
    kernel[lags % nfft] = taps
    predicted = np.fft.irfft(spec_x * np.fft.rfft(kernel), nfft)[:n]
    return (d - predicted).astype(np.float32)
