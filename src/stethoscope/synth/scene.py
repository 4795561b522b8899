"""A machine sound as a recipe: shafts, an optional on/off cycle, and a list of sound layers.

Machines build recipes from their attributes; anomalies edit recipes (boost an order, add an
impact train, add a hiss). Keeping the sound declarative is what lets one anomaly, such as a bearing
defect, apply to every machine that has a shaft.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stethoscope.synth import sources as S


@dataclass
class Rotor:
    """A rotating shaft. ``follow_duty``: speed follows the on/off envelope (a slider's stroke)."""

    f0: float
    jitter: float = 0.005
    wobble_hz: float = 0.7
    follow_duty: bool = False


@dataclass
class Duty:
    """On/off operation (valve pattern, slider stroke)."""

    on_s: float
    off_s: float
    jitter: float = 0.05
    ramp_s: float = 0.02


@dataclass
class Layer:
    level_db: float = 0.0
    gate: str | None = None  # None, "on" (only while running) or "off" (only while stopped)


@dataclass
class Harmonics(Layer):
    """Orders of a shaft's rotation (wavetable); ``bump`` = (depth, width, min_order): a damaged
    tooth."""

    rotor: str = "main"
    orders: dict[float, float] = field(default_factory=dict)
    period: int = 1
    am_depth: float = 0.1
    am_rate: float = 0.5
    bump: tuple[float, float, float] | None = None


@dataclass
class Hum(Layer):
    """Fixed-frequency tonal source (mains hum of a motor, a distant machine)."""

    freq: float = 100.0
    orders: dict[float, float] = field(default_factory=lambda: {1: 1.0})


@dataclass
class Noise(Layer):
    """Coloured noise; ``mod`` = (rotor, order, depth) makes it cyclostationary (blade passing)."""

    tilt: float = -3.0
    peaks: tuple[tuple[float, float, float], ...] = ()
    hp: float = 30.0
    lp: float | None = None
    mod: tuple[str, float, float] | None = None


@dataclass
class Impacts(Layer):
    """Impulses ringing a resonance: bearing defects, valve clicks, rail joints, rattles.

    ``source``: a rotor name (``ratio`` events per revolution), ``"on"``/``"off"`` (duty switching)
    or ``"random"`` (``ratio`` events per second, Poisson).
    """

    source: str = "main"
    ratio: float = 1.0
    fc: float = 3000.0
    decay_s: float = 0.004
    jitter_s: float = 0.0005
    amp_spread: float = 0.3
    shaft_mod: float = 0.0
    prob: float = 1.0
    bounce: tuple[float, float] | None = None
    delay_s: float = 0.0


@dataclass
class Squeal(Layer):
    """Friction squeal: a narrow wobbling tone that comes and goes."""

    freq: float = 2000.0
    wobble: float = 0.01
    on_frac: float = 0.5
    orders: dict[float, float] = field(default_factory=lambda: {1: 1.0, 2: 0.5, 3: 0.3})


@dataclass
class Recipe:
    rotors: dict[str, Rotor]
    layers: list[Layer]
    duty: Duty | None = None
    meta: dict = field(default_factory=dict)  # e.g. "mesh": lowest gear-mesh order, for damage


@dataclass
class _Ctx:
    n: int
    sr: int
    rng: np.random.Generator
    env: np.ndarray | None = None
    on_idx: np.ndarray | None = None
    off_idx: np.ndarray | None = None
    phases: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Sound:
    """A rendered sound: a waveform plus its stationary part still held as a power spectrum.

    Stationary noise and fixed-frequency hum of every source (machine and background) are summed
    as power and synthesised with one FFT at the very end, instead of one FFT per source.
    """

    wave: np.ndarray
    noise_power: np.ndarray | None = None

    def power(self) -> float:
        """Expected mean square of the final audio (the two parts are uncorrelated)."""
        extra = 0.0 if self.noise_power is None else float(self.noise_power.sum(dtype=np.float64))
        return S.rms(self.wave) ** 2 + extra

    def scaled(self, k: float) -> Sound:
        p = None if self.noise_power is None else self.noise_power * np.float32(k * k)
        return Sound(self.wave * np.float32(k), p)

    def __add__(self, other: Sound) -> Sound:
        if self.noise_power is None or other.noise_power is None:
            p = self.noise_power if other.noise_power is None else other.noise_power
        else:
            p = self.noise_power + other.noise_power
        return Sound(self.wave + other.wave, p)

    def audio(self, rng: np.random.Generator) -> np.ndarray:
        if self.noise_power is None:
            return self.wave
        return self.wave + S.noise_from_power(rng, self.wave.shape[0], self.noise_power)


def render(recipe: Recipe, n: int, sr: int, rng: np.random.Generator) -> Sound:
    """Synthesise a recipe over ``n`` samples (machine sound only, no background)."""
    ctx = _Ctx(n=n, sr=sr, rng=rng)
    if recipe.duty is not None:
        d = recipe.duty
        ctx.env, ctx.on_idx, ctx.off_idx = S.duty_cycle(
            rng, n, sr, d.on_s, d.off_s, d.jitter, d.ramp_s
        )
    for name, rot in recipe.rotors.items():
        f0 = rot.f0 * ctx.env if (rot.follow_duty and ctx.env is not None) else rot.f0
        ctx.phases[name] = S.shaft_phase(rng, n, sr, f0, rot.jitter, rot.wobble_hz)
    out = np.zeros(n, dtype=np.float32)
    power = np.zeros(n // 2 + 1, dtype=np.float32)
    for layer in recipe.layers:
        gated = layer.gate is not None and ctx.env is not None
        if isinstance(layer, Noise) and layer.mod is None and not gated:
            power += _shape(layer, ctx) * np.float32(S.db(2 * layer.level_db))
            continue
        if isinstance(layer, Hum) and not gated:
            S.add_lines(power, n, sr, layer.freq, layer.orders, S.db(layer.level_db))
            continue
        y = _RENDER[type(layer)](layer, ctx)
        if gated and ctx.env is not None:
            y = y * (ctx.env if layer.gate == "on" else 1.0 - ctx.env)
        out += np.float32(S.db(layer.level_db)) * y
    return Sound(out, power if power.any() else None)


def _shape(z: Noise, ctx: _Ctx) -> np.ndarray:
    return S.noise_shape(ctx.n, ctx.sr, z.tilt, z.peaks, z.hp, z.lp)


def _harmonics(h: Harmonics, ctx: _Ctx) -> np.ndarray:
    table = S.wavetable(h.orders, ctx.rng, h.period, h.bump)
    y = S.lookup(table, ctx.phases[h.rotor], h.period)
    if h.am_depth:
        y = y * (1.0 + h.am_depth * S.slow_random(ctx.rng, ctx.n, ctx.sr, h.am_rate))
    return y


def _hum(h: Hum, ctx: _Ctx) -> np.ndarray:
    table = S.wavetable(h.orders, ctx.rng)
    return S.lookup(table, S.tone_phase(ctx.n, ctx.sr, h.freq, ctx.rng))


def _noise(z: Noise, ctx: _Ctx) -> np.ndarray:
    y = S.normalise(S.noise_from_power(ctx.rng, ctx.n, _shape(z, ctx)))
    if z.mod is not None:
        rotor, order, depth = z.mod
        y = y * (1.0 + np.float32(depth) * S.lookup(S.SINE, order * ctx.phases[rotor]))
    return y


def _impacts(m: Impacts, ctx: _Ctx) -> np.ndarray:
    n, sr, rng = ctx.n, ctx.sr, ctx.rng
    if m.source == "random":
        count = rng.poisson(m.ratio * n / sr)
        idx = np.sort(rng.integers(0, n, count))
    elif m.source in ("on", "off"):
        chosen = ctx.on_idx if m.source == "on" else ctx.off_idx
        idx = np.zeros(0, np.int64) if chosen is None else chosen
    else:
        idx = S.crossings(ctx.phases[m.source], m.ratio)
    jitter = rng.standard_normal(idx.shape[0]) * m.jitter_s + m.delay_s
    idx = idx + np.round(jitter * sr).astype(np.int64)
    amps = np.exp(m.amp_spread * rng.standard_normal(idx.shape[0]))
    if m.prob < 1.0:
        amps *= rng.random(idx.shape[0]) < m.prob
    if m.shaft_mod and m.source in ctx.phases:
        # an inner-race defect turns with the shaft: load zone modulates the impact strength
        amps *= 1.0 + m.shaft_mod * np.cos(ctx.phases[m.source][np.clip(idx, 0, n - 1)])
    if m.bounce is not None:
        delay, rel = m.bounce
        idx = np.concatenate([idx, idx + int(delay * sr)])
        amps = np.concatenate([amps, rel * amps])
    x = S.impulses(n, idx, amps)
    y = S.resonator(x, sr, m.fc, m.decay_s)
    # level is the RMS of a train of 10 unit impacts per second: a sparser train is quieter
    probe = np.zeros(max(int(6 * m.decay_s * sr), 16), dtype=np.float32)
    probe[0] = 1.0
    energy = float(np.sum(np.square(S.resonator(probe, sr, m.fc, m.decay_s), dtype=np.float64)))
    return y / np.float32(np.sqrt(energy * 10.0 / sr) + 1e-12)


def _squeal(q: Squeal, ctx: _Ctx) -> np.ndarray:
    n, sr, rng = ctx.n, ctx.sr, ctx.rng
    # stick-slip is not sinusoidal: the squeal carries a few harmonics
    table = S.wavetable(q.orders, rng)
    y = S.lookup(table, S.shaft_phase(rng, n, sr, q.freq, q.wobble, 3.0))
    # comes and goes: a slow random curve, shifted so that about ``on_frac`` of it is above zero
    gate = S.slow_random(rng, n, sr, 1.5) + np.float32(3.0 * (q.on_frac - 0.5))
    return y * np.clip(gate, 0.0, 1.0)


_RENDER: dict[type, Callable[[Any, _Ctx], np.ndarray]] = {
    Harmonics: _harmonics,
    Hum: _hum,
    Noise: _noise,
    Impacts: _impacts,
    Squeal: _squeal,
}
