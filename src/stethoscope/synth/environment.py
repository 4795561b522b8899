"""Environmental noise for two-microphone (near/far) clips: factory hum, impacts and babble.

DCASE2026 Task 2 records each machine with a second microphone farther away, which hears more of
the surroundings. That noise is not the steady site background of the mono data: it is made of
separate events and sources whose mix changes from clip to clip, and the mix itself differs
between the source and the target site, so the noise is part of the domain shift. Three kinds:

* factory hum: low harmonics of a mains-like frequency (transformers, motors nearby) plus rumble;
* impacts: random thumps (low, ringing) and clicks (short, bright);
* babble: a few talkers, each a voiced harmonic comb and some breath noise through formant-like
  resonances, switched by a syllable-rate envelope and phrase-level pauses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stethoscope.synth import sources as S
from stethoscope.synth.scene import Hum, Impacts, Noise, Recipe, render


@dataclass(frozen=True)
class EnvMix:
    """One clip's environmental noise, drawn in the plan so the manifest can record it.

    ``level_db``: the total environmental noise at the near microphone relative to the machine
    there (0 dB: as loud as the machine). The kinds' levels are relative to each other.
    """

    level_db: float
    mains_hz: float
    hum_db: float
    impacts_db: float
    babble_db: float
    impact_rate: float  # events per second
    talkers: int


@dataclass(frozen=True)
class _Profile:
    mains_hz: float
    hum_db: float
    impacts_db: float
    babble_db: float
    rate: tuple[float, float]
    talkers: tuple[int, int]
    level_offset_db: float


# Source site: a 50 Hz plant, hum and heavy thumps, few people. Target site: a 60 Hz plant with
# more activity and more talk, and a little louder overall.
_PROFILES = {
    "source": _Profile(50.0, -3.0, 0.0, -6.0, (0.5, 2.0), (2, 3), 0.0),
    "target": _Profile(60.0, -8.0, -2.0, 0.0, (1.0, 3.0), (3, 5), 2.0),
}
#: spread of the environmental level around its domain's mean, dB (uniform)
LEVEL_SPREAD_DB = 4.0


def draw_mix(rng: np.random.Generator, domain: str, noise_db: float) -> EnvMix:
    """A clip's noise mix: its domain's profile, varied, at about ``noise_db`` at the near mic."""
    p = _PROFILES[domain]
    return EnvMix(
        level_db=float(noise_db + p.level_offset_db + rng.uniform(-1, 1) * LEVEL_SPREAD_DB),
        mains_hz=float(p.mains_hz * (1.0 + 0.002 * rng.standard_normal())),
        hum_db=float(p.hum_db + rng.normal(0.0, 3.0)),
        impacts_db=float(p.impacts_db + rng.normal(0.0, 3.0)),
        babble_db=float(p.babble_db + rng.normal(0.0, 3.0)),
        impact_rate=float(rng.uniform(*p.rate)),
        talkers=int(rng.integers(p.talkers[0], p.talkers[1] + 1)),
    )


def render_environment(mix: EnvMix, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power environmental noise (float32, ``n`` samples) as heard near its sources."""
    thump_fc, click_fc = rng.uniform(70.0, 300.0), rng.uniform(1200.0, 5000.0)
    recipe = Recipe(
        rotors={},
        layers=[
            Hum(
                level_db=mix.hum_db,
                freq=mix.mains_hz,
                orders={k: a * float(np.exp(0.3 * rng.standard_normal())) for k, a in _MAINS},
            ),
            Noise(level_db=mix.hum_db - 8.0, tilt=-9.0, hp=20.0, lp=250.0),  # rumble
            Impacts(
                level_db=mix.impacts_db,
                source="random",
                ratio=0.6 * mix.impact_rate,
                fc=thump_fc,
                decay_s=rng.uniform(0.03, 0.1),
                amp_spread=0.8,
            ),
            Impacts(
                level_db=mix.impacts_db - 4.0,
                source="random",
                ratio=0.4 * mix.impact_rate,
                fc=click_fc,
                decay_s=rng.uniform(0.002, 0.008),
                amp_spread=0.8,
            ),
        ],
    )
    y = render(recipe, n, sr, rng).audio(rng)
    y = y + np.float32(S.db(mix.babble_db)) * babble(rng, n, sr, mix.talkers)
    return S.normalise(y)


def _glottal_table(
    rng: np.random.Generator, f0: float, formants: tuple[tuple[float, float, float], ...]
) -> np.ndarray:
    """One pitch period: harmonics of ``f0`` up to 5 kHz weighted by the formants, random phases.

    Built with one inverse FFT (a voice has dozens of harmonics, where a machine has a few)."""
    k = np.arange(1, int(5000.0 / f0) + 1)
    spec = np.zeros(S.TABLE_SIZE // 2 + 1, dtype=np.complex128)
    spec[k] = S.spectral_gain(k * f0, -4.0, formants, 80.0, 4000.0) * np.exp(
        2j * np.pi * rng.random(k.shape[0])
    )
    return (np.fft.irfft(spec, S.TABLE_SIZE) * (S.TABLE_SIZE / 2)).astype(np.float32)


# transformer and motor hum: mostly twice the mains frequency, a few low harmonics
_MAINS = ((1.0, 0.35), (2.0, 1.0), (3.0, 0.3), (4.0, 0.35), (6.0, 0.15), (8.0, 0.08))


def babble(rng: np.random.Generator, n: int, sr: int, talkers: int) -> np.ndarray:
    """Speech-like babble of ``talkers`` voices, unit RMS.

    Not intelligible speech, only what a detector would confuse with it: a fluctuating pitch with
    harmonics shaped by three formants, some breath noise through the same formants, a syllable-rate
    on/off envelope (3-6 Hz) and longer pauses between phrases.
    """
    out = np.zeros(n, dtype=np.float32)
    for _ in range(max(int(talkers), 1)):
        f0 = rng.uniform(90.0, 240.0)
        formants = (
            (rng.uniform(300.0, 850.0), 3.0, 14.0),
            (rng.uniform(900.0, 2300.0), 3.5, 11.0),
            (rng.uniform(2400.0, 3400.0), 4.0, 7.0),
        )
        voiced = S.lookup(
            _glottal_table(rng, f0, formants), S.shaft_phase(rng, n, sr, f0, 0.08, 3.0)
        )
        breath = S.coloured_noise(rng, n, sr, tilt_db_oct=-2.0, peaks=formants, hp=150.0, lp=6000.0)
        voice = S.normalise(voiced) + np.float32(0.3) * breath
        syllables = np.clip(S.slow_random(rng, n, sr, rng.uniform(3.0, 6.0)) + 0.3, 0.0, None)
        phrases = np.clip(S.slow_random(rng, n, sr, 0.4) + 0.8, 0.0, 1.0)
        out += np.float32(S.db(rng.normal(0.0, 3.0))) * voice * syllables * phrases
    return S.normalise(out)
