"""The seven synthetic machine types, mirroring the DCASE2025 Task 2 development set.

Each type maps its attribute values (speed, load, pattern, model, microphone) to a physical recipe,
with small per-clip variation (levels, resonances) so that no two normal clips are alike. Source and
target domains use different attribute values: that is the domain shift the detectors must survive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stethoscope.synth.scene import Duty, Harmonics, Hum, Impacts, Noise, Recipe, Rotor

Builder = Callable[[dict[str, str], np.random.Generator], Recipe]


@dataclass(frozen=True)
class MachineType:
    """A machine type: attribute grid per domain, recipe builder, plausible anomalies.

    ``hidden``: attributes exist physically but the file names say ``noAttribute``.
    ``snr_db``: source-domain machine-to-background range; the target domain is noisier.
    The severity offsets keep each fault subtle for this machine: a bearing defect on a quiet
    fan stands out far more than on a bearing test rig that rattles anyway.
    """

    name: str
    keys: tuple[str, ...]
    source: tuple[tuple[str, ...], ...]
    target: tuple[tuple[str, ...], ...]
    build: Builder
    anomalies: dict[str, float]  # fault kind -> severity offset (dB), tuned per machine
    hidden: bool = False
    snr_db: tuple[float, float] = (0.0, 10.0)

    def sample_attributes(self, rng: np.random.Generator, domain: str) -> dict[str, str]:
        grid = self.source if domain == "source" else self.target
        return dict(zip(self.keys, grid[rng.integers(len(grid))]))

    def attribute_string(self, attrs: dict[str, str]) -> str:
        if self.hidden or not attrs:
            return "noAttribute"
        return "_".join(f"{k}_{v}" for k, v in attrs.items())


def _vary(rng: np.random.Generator, sd_db: float = 1.5) -> float:
    """A per-clip level factor: mounting, wear and microphone placement differ slightly."""
    return float(10.0 ** (rng.normal(0.0, sd_db) / 20.0))


def _spread(rng: np.random.Generator, rel: float = 0.03) -> float:
    return float(1.0 + rel * rng.standard_normal())


# ------------------------------------------------------------------------------ builders
def _fan(a: dict[str, str], rng: np.random.Generator) -> Recipe:
    f = float(a["rpm"]) / 60.0 * _spread(rng, 0.01)
    b = int(a["bl"])
    orders: dict[float, float] = {
        1: 0.12 * _vary(rng),
        2: 0.06 * _vary(rng),
        3: 0.03 * _vary(rng),
        b: 0.5 * _vary(rng),
        2 * b: 0.22 * _vary(rng),
        3 * b: 0.08 * _vary(rng),
    }
    return Recipe(
        rotors={"main": Rotor(f, jitter=0.004)},
        layers=[
            Harmonics(level_db=-2, orders=orders, am_depth=0.15),
            Noise(
                level_db=-3 + rng.normal(0, 1),
                tilt=-4.0,
                peaks=((b * f * 4 * _spread(rng), 0.7, 6.0), (1800 * _spread(rng), 1.0, 3.0)),
                mod=("main", b, 0.3),
            ),
            Hum(level_db=-16 + rng.normal(0, 1.5), freq=100.0, orders={1: 1.0, 2: 0.5, 3: 0.3}),
            Noise(level_db=-20, tilt=0.0, peaks=((3200 * _spread(rng), 2.0, 8.0),), hp=800.0),
        ],
        meta={"mesh": None},
    )


def _gearbox(a: dict[str, str], rng: np.random.Generator) -> Recipe:
    f = (12.0 + 14.0 * float(a["volt"])) * _spread(rng, 0.01)
    z = 23
    load = float(a["wt"]) / 100.0
    mesh = 0.25 * (1.0 + 0.6 * load)
    orders: dict[float, float] = {
        1: 0.1 * _vary(rng),
        2: 0.05 * _vary(rng),
        z: mesh * _vary(rng),
        2 * z: 0.45 * mesh * _vary(rng),
        3 * z: 0.15 * mesh * _vary(rng),
        z - 1: 0.05 * mesh,
        z + 1: 0.05 * mesh,
    }
    return Recipe(
        rotors={"main": Rotor(f, jitter=0.006 + 0.004 * load)},
        layers=[
            Harmonics(level_db=0, orders=orders, am_depth=0.12),
            Noise(
                level_db=-6 + 2 * load + rng.normal(0, 1),
                tilt=-3.0,
                peaks=((1500 * _spread(rng), 1.2, 6.0),),
            ),
            Hum(level_db=-14 + rng.normal(0, 1.5), freq=100.0, orders={1: 1.0, 2: 0.4}),
        ],
        meta={"mesh": z - 2},
    )


def _bearing(a: dict[str, str], rng: np.random.Generator) -> Recipe:
    f = float(a["vel"]) * 2.5 * _spread(rng, 0.01)
    res = {"A": 2600.0, "B": 4200.0, "C": 3300.0}[a["loc"]] * _spread(rng)
    return Recipe(
        rotors={"main": Rotor(f, jitter=0.005)},
        layers=[
            Harmonics(
                level_db=-4,
                orders={1: 0.25 * _vary(rng), 2: 0.1 * _vary(rng), 3: 0.05 * _vary(rng)},
                am_depth=0.1,
            ),
            Noise(level_db=-2 + rng.normal(0, 1), tilt=-1.5, peaks=((res, 1.5, 9.0),), hp=200.0),
            Noise(level_db=-6, tilt=-6.0, peaks=((f * 4, 0.8, 4.0),)),
            Impacts(
                level_db=-16, source="random", ratio=60.0, fc=res, decay_s=0.001, amp_spread=0.6
            ),
        ],
        meta={"mesh": None},
    )


def _slider(a: dict[str, str], rng: np.random.Generator) -> Recipe:
    vel = float(a["vel"])
    ac = float(a["ac"])
    return Recipe(
        rotors={"main": Rotor(vel / 4.0 * _spread(rng, 0.01), jitter=0.01, follow_duty=True)},
        duty=Duty(
            on_s=0.9 * 600.0 / vel,
            off_s=0.45,
            jitter=0.04,
            ramp_s=float(np.clip(0.02 / ac, 0.05, 0.35)),
        ),
        layers=[
            Harmonics(
                level_db=-2,
                gate="on",
                orders={1: 0.4 * _vary(rng), 2: 0.2 * _vary(rng), 4: 0.1 * _vary(rng), 6: 0.05},
            ),
            Noise(
                level_db=-3,
                gate="on",
                tilt=-1.0,
                peaks=((2100 * _spread(rng), 1.0, 6.0),),
                mod=("main", 1, 0.2),
            ),
            Impacts(level_db=-2, source="off", fc=800 * _spread(rng), decay_s=0.02),
            Impacts(level_db=-8, source="on", fc=1300 * _spread(rng), decay_s=0.01),
            Hum(level_db=-18, freq=100.0, orders={1: 1.0, 3: 0.3}),
        ],
        meta={"mesh": None},
    )


_VALVE_PATTERNS = {"00": (0.5, 0.5), "01": (0.3, 0.7), "02": (0.8, 0.4), "03": (0.25, 0.3)}


def _valve(a: dict[str, str], rng: np.random.Generator) -> Recipe:
    on_s, off_s = _VALVE_PATTERNS[a["pat"]]
    panel = a["panel"] == "open"
    return Recipe(
        rotors={"main": Rotor(25.0 * _spread(rng, 0.02))},
        duty=Duty(on_s=on_s, off_s=off_s, jitter=0.03, ramp_s=0.01),
        layers=[
            Impacts(
                level_db=2, source="on", fc=2200 * _spread(rng), decay_s=0.008, amp_spread=0.15
            ),
            Impacts(
                level_db=0, source="off", fc=1400 * _spread(rng), decay_s=0.012, amp_spread=0.15
            ),
            Noise(
                level_db=-12 + (2 if panel else 0),
                gate="on",
                tilt=1.0,
                hp=1000.0,
                peaks=((4000 * _spread(rng), 1.0, 5.0),),
            ),
            Harmonics(level_db=-14, orders={1: 0.5, 2: 0.3, 4: 0.2}, am_depth=0.1),
            Noise(level_db=-20, tilt=-4.0),
        ],
        meta={"mesh": None},
    )


_CAR_MODELS = {  # motor order profile and gear teeth per toy car model
    "A1": ({1: 0.3, 2: 0.5, 3: 0.2, 4: 0.15, 6: 0.1}, 12),
    "B1": ({1: 0.25, 2: 0.4, 3: 0.3, 5: 0.12, 6: 0.1}, 10),
    "C1": ({1: 0.3, 2: 0.35, 4: 0.25, 6: 0.15, 8: 0.05}, 14),
    "D2": ({1: 0.2, 2: 0.5, 3: 0.1, 4: 0.25, 8: 0.1}, 11),
    "E2": ({1: 0.3, 2: 0.3, 3: 0.3, 4: 0.1, 5: 0.1}, 13),
}


def _toycar(a: dict[str, str], rng: np.random.Generator) -> Recipe:
    motor, teeth = _CAR_MODELS[a["car"]]
    f = float(a["spd"].rstrip("V")) * 4.0 * _spread(rng, 0.015)
    mic2 = a["mic"] == "2"
    orders: dict[float, float] = {k: v * _vary(rng) for k, v in motor.items()}
    orders.update({teeth: 0.2 * _vary(rng), 2 * teeth: 0.08 * _vary(rng)})
    return Recipe(
        rotors={"main": Rotor(f, jitter=0.01), "wheel": Rotor(f / teeth * 0.8, jitter=0.01)},
        layers=[
            Harmonics(level_db=0, orders=orders, am_depth=0.2, am_rate=1.0),
            Noise(
                level_db=(2 if mic2 else -3) + rng.normal(0, 1.5),
                tilt=-3.0,
                peaks=((600 * _spread(rng), 0.8, 5.0),),
                mod=("wheel", 1, 0.25),
            ),
            Noise(
                level_db=-15 + (-3 if mic2 else 0),
                tilt=0.0,
                hp=2000.0,
                peaks=((5000 * _spread(rng), 1.5, 6.0),),
            ),
        ],
        meta={"mesh": teeth - 2},
    )


def _toytrain(a: dict[str, str], rng: np.random.Generator) -> Recipe:
    motor, teeth = _CAR_MODELS[a["car"]]
    spd = float(a["spd"])
    f = spd * 20.0 * _spread(rng, 0.015)
    mic2 = a["mic"] == "2"
    orders: dict[float, float] = {k: 0.8 * v * _vary(rng) for k, v in motor.items()}
    orders[teeth] = 0.15 * _vary(rng)
    return Recipe(
        rotors={"main": Rotor(f, jitter=0.012), "wheel": Rotor(spd * 0.8, jitter=0.012)},
        layers=[
            Harmonics(level_db=-3, orders=orders, am_depth=0.15),
            Impacts(
                level_db=(-2 if mic2 else 1),
                source="wheel",
                ratio=0.4,
                fc=900 * _spread(rng),
                decay_s=0.015,
                jitter_s=0.004,
                bounce=(0.09, 0.8),
            ),
            Noise(
                level_db=-2 + rng.normal(0, 1.5),
                tilt=-4.0,
                peaks=((250 * _spread(rng), 1.0, 6.0),),
                mod=("wheel", 2, 0.2),
            ),
            Noise(level_db=-18, tilt=0.0, hp=1500.0),
        ],
        meta={"mesh": teeth - 2},
    )


# ------------------------------------------------------------------------------ registry
MACHINES: dict[str, MachineType] = {
    m.name: m
    for m in (
        MachineType(
            "fan",
            ("rpm", "bl"),
            source=(("1200", "5"), ("1500", "5"), ("1800", "5")),
            target=(("1500", "7"), ("2100", "7")),
            build=_fan,
            anomalies={"imbalance": 2, "looseness": 2, "bearing_outer": -8, "bearing_inner": -10},
        ),
        MachineType(
            "gearbox",
            ("volt", "wt"),
            source=tuple((v, w) for v in ("1.0", "1.3", "1.6") for w in ("0", "50", "100")),
            target=(("2.0", "150"), ("0.8", "150")),
            build=_gearbox,
            hidden=True,
            anomalies={"gear_tooth": 2, "bearing_inner": -8, "looseness": 2},
        ),
        MachineType(
            "bearing",
            ("vel", "loc"),
            source=(("6", "A"), ("10", "A"), ("14", "A")),
            target=(("18", "B"), ("8", "C")),
            build=_bearing,
            anomalies={"bearing_outer": 0, "bearing_inner": -3, "imbalance": 2, "friction": 2},
        ),
        MachineType(
            "slider",
            ("vel", "ac"),
            source=tuple((v, c) for v in ("500", "600", "700") for c in ("0.10", "0.30")),
            target=(("900", "0.05"),),
            build=_slider,
            hidden=True,
            anomalies={"friction": 2, "rail_damage": 0, "timing": 3},
        ),
        MachineType(
            "valve",
            ("pat", "panel"),
            source=(("00", "open"), ("01", "open"), ("02", "open")),
            target=(("03", "closed"), ("00", "closed")),
            build=_valve,
            anomalies={"leak": 3, "timing": 4, "chatter": 3},
        ),
        MachineType(
            "ToyCar",
            ("car", "spd", "mic"),
            source=tuple((c, s, "1") for c in ("A1", "B1", "C1") for s in ("28V", "31V")),
            target=(("D2", "34V", "2"), ("E2", "31V", "2")),
            build=_toycar,
            anomalies={"imbalance": 0, "gear_tooth": 3, "bearing_outer": -6, "friction": -2},
        ),
        MachineType(
            "ToyTrain",
            ("car", "spd", "mic"),
            source=tuple((c, s, "1") for c in ("A1", "B1", "C1") for s in ("6", "7", "8")),
            target=(("D2", "10", "2"), ("E2", "5", "2")),
            build=_toytrain,
            anomalies={"wheel_flat": 2, "gear_tooth": 3, "looseness": 1, "friction": 2},
        ),
    )
}

DEFAULT_MACHINES: tuple[str, ...] = tuple(MACHINES)
