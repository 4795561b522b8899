"""Faults as edits of a machine's recipe.

Each anomaly is a physically motivated change (an extra impact train at a bearing defect frequency,
a boosted first order, a hiss band) scaled by a severity in [0, 1]. Severities reach down to barely
audible on purpose: a synthetic set where every fault is loud would flatter every detector.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from stethoscope.synth.scene import Harmonics, Impacts, Noise, Recipe, Rotor, Squeal

Edit = Callable[[Recipe, np.random.Generator, float, float], None]


def _main_harmonics(r: Recipe) -> Harmonics | None:
    for layer in r.layers:
        if isinstance(layer, Harmonics) and layer.rotor == "main":
            return layer
    return None


def _level(s: float, lo: float, hi: float, offset: float) -> float:
    return lo + s * (hi - lo) + offset


def imbalance(r: Recipe, rng: np.random.Generator, s: float, off: float) -> None:
    """Mass imbalance: the once-per-revolution order grows."""
    h = _main_harmonics(r)
    if h is None:
        return
    base = max(h.orders.get(1, 0.0), 0.05)
    h.orders = dict(h.orders)
    h.orders[1] = base * 10.0 ** (_level(s, 6.0, 20.0, off) / 20.0)


def looseness(r: Recipe, rng: np.random.Generator, s: float, off: float) -> None:
    """Mechanical looseness: a comb of many orders, half orders included, plus rattle."""
    orders = {k / 2.0: rng.uniform(0.4, 1.0) / np.sqrt(k) for k in range(1, 25)}
    r.layers.append(
        Harmonics(
            level_db=_level(s, -14.0, 0.0, off), orders=orders, period=2, am_depth=0.3, am_rate=2.0
        )
    )
    r.layers.append(
        Impacts(
            level_db=_level(s, -18.0, -4.0, off),
            source="random",
            ratio=rng.uniform(2.0, 8.0),
            fc=rng.uniform(400, 1500),
            decay_s=0.01,
        )
    )


def _bearing(
    r: Recipe, rng: np.random.Generator, s: float, off: float, ratio: float, shaft_mod: float
) -> None:
    r.layers.append(
        Impacts(
            level_db=_level(s, -20.0, -4.0, off),
            source="main",
            ratio=ratio,
            fc=rng.uniform(2500, 5500),
            decay_s=rng.uniform(0.0008, 0.002),
            jitter_s=0.0003,
            amp_spread=0.3,
            shaft_mod=shaft_mod,
        )
    )


def bearing_outer(r: Recipe, rng: np.random.Generator, s: float, off: float) -> None:
    """Outer-race defect: impacts at BPFO (about 3.1-3.6 per revolution), steady strength."""
    _bearing(r, rng, s, off, rng.uniform(3.05, 3.6), 0.0)


def bearing_inner(r: Recipe, rng: np.random.Generator, s: float, off: float) -> None:
    """Inner-race defect: impacts at BPFI (about 4.9-5.5 per revolution), shaft-modulated."""
    _bearing(r, rng, s, off, rng.uniform(4.9, 5.5), 0.7)


def gear_tooth(r: Recipe, rng: np.random.Generator, s: float, off: float) -> None:
    """Damaged tooth: the mesh is disturbed once per revolution, spreading sidebands."""
    h = _main_harmonics(r)
    mesh = r.meta.get("mesh")
    if h is None or mesh is None:
        return
    depth = 10.0 ** (_level(s, -4.0, 8.0, off) / 20.0)
    h.bump = (depth, rng.uniform(0.05, 0.15), float(mesh))


def friction(r: Recipe, rng: np.random.Generator, s: float, off: float) -> None:
    """Friction squeal: an intermittent narrow tone while the machine moves."""
    r.layers.append(
        Squeal(
            level_db=_level(s, -6.0, 6.0, off),
            freq=rng.uniform(1200, 3800),
            wobble=rng.uniform(0.003, 0.02),
            on_frac=0.3 + 0.4 * s,
            gate="on" if r.duty is not None else None,
        )
    )


def leak(r: Recipe, rng: np.random.Generator, s: float, off: float) -> None:
    """Leaking seat: a whistling hiss while the valve should be closed."""
    r.layers.append(
        Noise(
            level_db=_level(s, -16.0, -2.0, off),
            tilt=0.0,
            hp=1500.0,
            peaks=((rng.uniform(5000, 7500), 2.0, 10.0),),
            gate="off",
        )
    )


def timing(r: Recipe, rng: np.random.Generator, s: float, off: float) -> None:
    """Timing fault: a sticking actuator makes cycles longer or shorter and irregular."""
    if r.duty is None:
        return
    d = copy.copy(r.duty)
    change = (0.2 + 0.4 * s) * 10.0 ** (off / 40.0)
    d.on_s *= 1.0 + change * rng.choice([-1.0, 1.0])
    d.jitter += 0.05 + 0.2 * s
    r.duty = d


def chatter(r: Recipe, rng: np.random.Generator, s: float, off: float) -> None:
    """Chattering valve: the armature bounces after opening and buzzes at twice mains frequency
    while held open (a worn shading ring)."""
    opening = [x for x in r.layers if isinstance(x, Impacts) and x.source == "on"]
    if not opening:
        return
    first = opening[0]
    r.layers.append(
        Impacts(
            level_db=first.level_db + _level(s, -10.0, 2.0, off),
            source="on",
            delay_s=rng.uniform(0.012, 0.04),
            jitter_s=0.003,
            fc=first.fc * rng.uniform(1.3, 1.9),
            decay_s=first.decay_s * 0.7,
        )
    )
    r.rotors["buzz"] = Rotor(float(rng.choice([100.0, 120.0])), jitter=0.002)
    r.layers.append(
        Impacts(
            level_db=_level(s, -24.0, -10.0, off),
            source="buzz",
            gate="on",
            fc=first.fc * rng.uniform(1.2, 2.0),
            decay_s=0.0015,
            amp_spread=0.5,
            prob=0.3 + 0.6 * s,
        )
    )


def rail_damage(r: Recipe, rng: np.random.Generator, s: float, off: float) -> None:
    """Damaged rail or ball screw: a bump every few motor revolutions while moving."""
    r.layers.append(
        Impacts(
            level_db=_level(s, -18.0, -4.0, off),
            source="main",
            ratio=1.0 / rng.uniform(3.0, 7.0),
            fc=rng.uniform(1000, 2500),
            decay_s=0.006,
            gate="on",
        )
    )


def wheel_flat(r: Recipe, rng: np.random.Generator, s: float, off: float) -> None:
    """Flat spot on a wheel: one knock per wheel revolution."""
    r.layers.append(
        Impacts(
            level_db=_level(s, -12.0, 2.0, off),
            source="wheel",
            ratio=1.0,
            fc=rng.uniform(500, 1400),
            decay_s=0.01,
            jitter_s=0.002,
        )
    )


ANOMALIES: dict[str, Edit] = {
    "imbalance": imbalance,
    "looseness": looseness,
    "bearing_outer": bearing_outer,
    "bearing_inner": bearing_inner,
    "gear_tooth": gear_tooth,
    "friction": friction,
    "leak": leak,
    "timing": timing,
    "chatter": chatter,
    "rail_damage": rail_damage,
    "wheel_flat": wheel_flat,
}


def apply(
    kind: str, recipe: Recipe, rng: np.random.Generator, severity: float, offset_db: float = 0.0
) -> Recipe:
    """A faulty copy of ``recipe``; ``offset_db`` shifts the whole severity scale of a machine."""
    if kind not in ANOMALIES:
        raise ValueError(f"unknown anomaly {kind!r}; known: {sorted(ANOMALIES)}")
    faulty = copy.deepcopy(recipe)
    ANOMALIES[kind](faulty, rng, float(np.clip(severity, 0.0, 1.0)), offset_db)
    return faulty
