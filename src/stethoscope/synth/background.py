"""Factory background noise, whose colour depends on the domain.

In DCASE recordings the target domain often differs in where the machine stands, not only in how it
runs: other machines, another room. So the source and target backgrounds differ in spectral tilt,
resonances and interfering hum, and every clip varies a little around its domain's profile.
"""

from __future__ import annotations

import zlib

import numpy as np

from stethoscope.synth.scene import Hum, Impacts, Noise, Recipe, Sound, render

# (tilt dB/oct, resonances, interfering hum Hz, per-clip spread) per domain; the target site is
# also less steady than the source site
_PROFILES = {
    "source": (-4.5, ((150.0, 1.5, 7.0), (700.0, 1.0, 3.0)), 60.0, 1.0),
    "target": (-2.0, ((380.0, 1.2, 6.0), (2600.0, 1.0, 5.0)), 150.0, 1.6),
}


def background(machine: str, domain: str, n: int, sr: int, rng: np.random.Generator) -> Sound:
    """Unit-power factory noise for a machine's site in a domain, varied per clip."""
    tilt, peaks, hum, spread = _PROFILES[domain]
    site = 1.0 + 0.15 * ((zlib.crc32(machine.encode()) % 1000) / 1000.0 - 0.5)  # per machine
    varied = tuple(
        (fc * site * (1 + 0.05 * rng.standard_normal()), q, g + rng.normal(0, 2.0 * spread))
        for fc, q, g in peaks
    )
    recipe = Recipe(
        rotors={},
        layers=[
            Noise(level_db=0.0, tilt=tilt + rng.normal(0, 0.6 * spread), peaks=varied, hp=25.0),
            Hum(level_db=-14 + rng.normal(0, 3), freq=hum * site, orders={1: 1.0, 2: 0.6, 3: 0.2}),
            Impacts(
                level_db=-8 + rng.normal(0, 3),
                source="random",
                ratio=rng.uniform(0.2, 1.5),
                fc=rng.uniform(300, 3000),
                decay_s=rng.uniform(0.02, 0.06),
                amp_spread=0.8,
            ),
        ],
    )
    sound = render(recipe, n, sr, rng)
    return sound.scaled(1.0 / np.sqrt(sound.power()))
