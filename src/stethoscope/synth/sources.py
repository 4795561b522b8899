"""Vectorised signal primitives for the synthetic machine sounds.

Every primitive works on whole clips with numpy (no per-sample Python loops), because the generator
must write thousands of 10 s clips in minutes on two cores. Stationary noise is shaped in the
frequency domain (one inverse FFT of a random complex spectrum), periodic machine vibration is read
from a wavetable indexed by a shaft phase, slow controls are computed at a low rate and upsampled,
and impacts are sparse impulse trains through a two-pole resonator. Audio is float32 throughout;
only phases are float64 (they grow large).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

TWO_PI = 2.0 * np.pi
TABLE_SIZE = 8192  # a power of two: table wrap-around is a bit mask


def db(x: float) -> float:
    """Decibels to linear amplitude."""
    return float(10.0 ** (x / 20.0))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def normalise(x: np.ndarray) -> np.ndarray:
    """Unit RMS, so that layer levels are set in dB relative to each other."""
    return (x * np.float32(1.0 / rms(x))).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------- noise
def spectral_gain(
    freqs: np.ndarray,
    tilt_db_oct: float = 0.0,
    peaks: tuple[tuple[float, float, float], ...] = (),
    hp: float = 20.0,
    lp: float | None = None,
    ref: float = 1000.0,
) -> np.ndarray:
    """Amplitude response: an octave tilt, resonant bumps (centre, Q, dB), soft high/low-pass.

    Real machine and factory noise is coloured, and the colour is what separates domains, so noise
    is always described by a response rather than generated white.
    """
    f = np.maximum(freqs, 1.0).astype(np.float32)
    g_db = np.float32(tilt_db_oct) * np.log2(f * np.float32(1.0 / ref))
    for fc, q, gain in peaks:
        r = f * np.float32(1.0 / fc) - np.float32(fc) / f
        g_db += np.float32(gain) / (1.0 + np.float32(q * q) * r * r)
    g = np.power(np.float32(10.0), g_db * np.float32(0.05))
    g /= np.sqrt(1.0 + (np.float32(hp) / f) ** 4)
    if lp is not None:
        g /= np.sqrt(1.0 + (f * np.float32(1.0 / lp)) ** 4)
    return g


def noise_shape(
    n: int,
    sr: int,
    tilt_db_oct: float = 0.0,
    peaks: tuple[tuple[float, float, float], ...] = (),
    hp: float = 20.0,
    lp: float | None = None,
    grid: int = 2048,
) -> np.ndarray:
    """Power shape over the ``n // 2 + 1`` FFT bins, summing to 1 (unit variance).

    Evaluated on a coarse grid and interpolated: the responses are smooth, and the full-resolution
    evaluation would cost more than the FFT itself.
    """
    coarse = spectral_gain(np.linspace(0.0, sr / 2.0, grid + 1), tilt_db_oct, peaks, hp, lp) ** 2
    power = upsample(coarse, n // 2 + 1)
    power[0] = 0.0
    return power / np.float32(power.sum(dtype=np.float64))


def noise_from_power(rng: np.random.Generator, n: int, power: np.ndarray) -> np.ndarray:
    """Noise whose variance per FFT bin is ``power`` (total variance = power.sum()).

    Exact magnitudes with random phases, then one inverse FFT: Gaussian-like in time (many bins
    add up), the colour of filtered white noise, and spectral lines are exact sinusoids, so hum and
    every stationary noise of a clip cost a single FFT together.
    """
    phase = rng.random(power.shape[0], dtype=np.float32) * np.float32(TWO_PI)
    mag = np.sqrt(power) * np.float32(n / np.sqrt(2.0))
    spec = np.empty(power.shape[0], dtype=np.complex64)
    spec.real = mag * np.cos(phase)
    spec.imag = mag * np.sin(phase)
    return np.fft.irfft(spec, n).astype(np.float32, copy=False)


def add_lines(
    power: np.ndarray, n: int, sr: int, freq: float, orders: dict[float, float], amplitude: float
) -> None:
    """Add a fixed-frequency harmonic tone (hum) to a power spectrum, as exact bin-centred lines."""
    for order, amp in orders.items():
        k = int(round(freq * order * n / sr))
        if 0 < k < power.shape[0] - 1:
            power[k] += np.float32((amplitude * amp) ** 2 / 2.0)


def coloured_noise(rng: np.random.Generator, n: int, sr: int, **shape) -> np.ndarray:
    """Stationary noise of a given colour (see :func:`spectral_gain`), unit RMS."""
    return normalise(noise_from_power(rng, n, noise_shape(n, sr, **shape)))


# ---------------------------------------------------------------------------------- control
def upsample(control: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation of evenly spaced control points spanning ``n`` samples (float32)."""
    c = np.asarray(control, dtype=np.float32)
    seg = c.shape[0] - 1
    step = -(-n // seg)
    w = np.arange(step, dtype=np.float32) / np.float32(step)
    return (c[:-1, None] * (1.0 - w) + c[1:, None] * w).ravel()[:n]


def slow_random(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """A smooth zero-mean, unit-variance-ish random curve varying at about ``rate_hz``.

    Cosine interpolation between random knots at a control rate, then linear upsampling: smooth
    enough for speed and level drift at a fraction of the per-sample cost.
    """
    knots = max(int(n / sr * rate_hz) + 2, 3)
    vals = rng.standard_normal(knots)
    m = max(min(n // 32, int(n / sr * 200.0)), knots * 8)
    x = np.linspace(0.0, knots - 1, m)
    i = np.minimum(x.astype(np.int64), knots - 2)
    w = 0.5 - 0.5 * np.cos(np.pi * (x - i))
    return upsample(vals[i] * (1.0 - w) + vals[i + 1] * w, n)


def shaft_phase(
    rng: np.random.Generator,
    n: int,
    sr: int,
    f0: float | np.ndarray,
    jitter: float = 0.005,
    wobble_hz: float = 0.7,
) -> np.ndarray:
    """Rotation phase (radians, float64, non-negative) of a shaft with slow speed fluctuation.

    ``f0`` may be an array (speed profile, e.g. a slider's stroke). The start angle is random, so
    two clips of the same machine never line up sample for sample.
    """
    freq = np.asarray(f0, dtype=np.float32) * (
        1.0 + np.float32(jitter) * slow_random(rng, n, sr, wobble_hz)
    )
    phase = np.cumsum(freq, dtype=np.float64)
    phase *= TWO_PI / sr
    phase += rng.uniform(0.0, TWO_PI)
    return phase


def tone_phase(n: int, sr: int, freq: float, rng: np.random.Generator) -> np.ndarray:
    """Phase of a fixed-frequency source (mains hum), random start."""
    return np.arange(n) * (TWO_PI * freq / sr) + rng.uniform(0.0, TWO_PI)


# ---------------------------------------------------------------------------------- periodic
def wavetable(
    orders: dict[float, float],
    rng: np.random.Generator,
    period: int = 1,
    bump: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """One ``period``-revolution waveform with the given (order -> amplitude) harmonics.

    Random phases per clip. ``bump`` = (depth, width_rad, min_order) multiplies the orders at or
    above ``min_order`` (the gear mesh) by a narrow angular bump once per revolution: a damaged
    tooth, heard as sidebands around the mesh frequency.
    """
    theta = np.linspace(0.0, TWO_PI * period, TABLE_SIZE, endpoint=False)
    table = np.zeros(TABLE_SIZE)
    carrier = np.zeros(TABLE_SIZE)
    for order, amp in orders.items():
        if amp:
            comp = amp * np.sin(order * theta + rng.uniform(0.0, TWO_PI))
            table += comp
            if bump is not None and order >= bump[2]:
                carrier += comp
    if bump is not None:
        depth, width, _ = bump
        centre = rng.uniform(0.0, TWO_PI)
        d = np.angle(np.exp(1j * (theta - centre)))  # wrapped angle distance, per revolution
        table += depth * np.exp(-0.5 * (d / width) ** 2) * carrier
    return table.astype(np.float32)


def lookup(table: np.ndarray, phase: np.ndarray, period: int = 1) -> np.ndarray:
    """Read a wavetable at a non-negative phase (radians) with linear interpolation."""
    size = table.shape[0]
    pos = phase * (size / (TWO_PI * period))
    i0 = pos.astype(np.int64)
    frac = (pos - i0).astype(np.float32)
    i0 &= size - 1
    a = table[i0]
    i0 += 1
    i0 &= size - 1
    return a + (table[i0] - a) * frac


SINE = np.sin(np.linspace(0.0, TWO_PI, TABLE_SIZE, endpoint=False)).astype(np.float32)


# ---------------------------------------------------------------------------------- impacts
def crossings(phase: np.ndarray, ratio: float) -> np.ndarray:
    """Sample indices where ``phase * ratio`` passes a multiple of 2 pi (one event per cycle)."""
    cycles = (phase * (ratio / TWO_PI)).astype(np.int64)
    return np.flatnonzero(np.diff(cycles)) + 1


def impulses(n: int, idx: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """A sparse impulse signal (amplitudes add where indices collide)."""
    x = np.zeros(n, dtype=np.float32)
    keep = (idx >= 0) & (idx < n)
    np.add.at(x, idx[keep], amps[keep].astype(np.float32))
    return x


def resonator(x: np.ndarray, sr: int, fc: float, decay_s: float) -> np.ndarray:
    """Ring a two-pole resonance at ``fc`` Hz, 1/e decay time ``decay_s``: a struck structure."""
    r = np.exp(-1.0 / (decay_s * sr))
    w = TWO_PI * min(fc, 0.45 * sr) / sr
    a = [1.0, -2.0 * r * np.cos(w), r * r]
    return lfilter([1.0 - r], a, x).astype(np.float32)


# ---------------------------------------------------------------------------------- on/off
def duty_cycle(
    rng: np.random.Generator,
    n: int,
    sr: int,
    on_s: float,
    off_s: float,
    jitter: float,
    ramp_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 0..1 envelope of on/off cycles, with the on and off switching sample indices.

    Cycle lengths jitter by a relative ``jitter``; ramps keep the switching physically smooth.
    """
    dur = n / sr
    count = int(dur / max(on_s + off_s, 1e-3) / 0.3) + 3
    on = on_s * (1.0 + jitter * rng.standard_normal(count)).clip(0.3, None)
    off = off_s * (1.0 + jitter * rng.standard_normal(count)).clip(0.3, None)
    start = -rng.uniform(0.0, on_s + off_s)
    t_on = start + np.concatenate([[0.0], np.cumsum(on + off)[:-1]])
    t_off = t_on + on
    ramp = np.minimum(ramp_s, 0.4 * np.minimum(on, off))
    times = np.stack([t_on, t_on + ramp, t_off, t_off + ramp], axis=1).ravel()
    vals = np.tile([0.0, 1.0, 1.0, 0.0], count)
    env = np.interp(np.arange(n, dtype=np.float32) / np.float32(sr), times, vals)
    on_idx = np.round(t_on * sr).astype(np.int64)
    off_idx = np.round(t_off * sr).astype(np.int64)
    return (
        env.astype(np.float32),
        on_idx[(on_idx >= 0) & (on_idx < n)],
        off_idx[(off_idx >= 0) & (off_idx < n)],
    )
