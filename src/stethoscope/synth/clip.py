"""Rendering one planned clip: the mono mix, or the same scene at a near and a far microphone.

A :class:`ClipJob` holds everything decided in the plan; every random draw while rendering comes
from the clip's own streams (:func:`clip_rng`), so the bytes depend on the job alone, not on the
order in which worker processes render the jobs.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stethoscope import SAMPLE_RATE
from stethoscope.synth import anomalies
from stethoscope.synth import sources as S
from stethoscope.synth.background import background
from stethoscope.synth.environment import EnvMix, render_environment
from stethoscope.synth.machines import MACHINES
from stethoscope.synth.microphones import Microphones, padded_length, place
from stethoscope.synth.scene import Sound, render

#: level of the machine and site background at the near microphone, relative to mono clips
NEAR_FAR_LEVEL = 0.25
_CODES = {
    "train": 1,
    "test": 2,
    "supplemental": 3,
    "source": 1,
    "target": 2,
    "normal": 1,
    "anomaly": 2,
    "clean": 3,
    "noise": 4,
}


@dataclass
class ClipJob:
    """Everything needed to render one clip, decided up front in the parent process."""

    path: Path
    machine: str
    split: str
    domain: str
    label: str  # normal | anomaly | clean | noise
    index: int
    seed: int
    n: int
    attrs: dict[str, str] = field(default_factory=dict)
    anomaly: str = ""
    severity: float = 0.0
    snr_db: float = float("nan")
    gain_db: float = 0.0
    channels: str = "mono"
    mic: Microphones | None = None  # near-far only
    env: EnvMix | None = None  # near-far only, none for clean supplemental clips

    @property
    def relative(self) -> str:
        return f"{self.machine}/{self.split}/{self.path.name}"


def clip_rng(
    seed: int, machine: str, split: str, domain: str, label: str, index: int, stream: int
) -> np.random.Generator:
    key = (
        zlib.crc32(machine.encode()),
        _CODES[split],
        _CODES[domain],
        _CODES[label],
        index,
        stream,
    )
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _machine(job: ClipJob, n: int, sr: int, rng: np.random.Generator) -> Sound:
    """The machine's own sound over ``n`` samples, faults applied, unit power."""
    mt = MACHINES[job.machine]
    recipe = mt.build(job.attrs, rng)
    if job.anomaly:
        recipe = anomalies.apply(job.anomaly, recipe, rng, job.severity, mt.anomalies[job.anomaly])
    sound = render(recipe, n, sr, rng)
    return sound.scaled(1.0 / np.sqrt(sound.power()))


def synthesise(job: ClipJob, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The waveform of one planned clip (float32, peak below full scale): ``(n,)`` for mono
    clips, ``(n, 2)`` (near, far) for near-far ones."""
    if job.channels == "near-far":
        # a fixed gain, as a recorder has: the machine and its site background at the near
        # microphone at a level that does not depend on the environmental noise, which adds to it
        # (and dominates the far channel, hence the lower level, for head room)
        heard = (0.0 if job.label == "noise" else 1.0) + (
            0.0 if job.label == "clean" else 10.0 ** (-job.snr_db / 10.0)
        )
        y = np.zeros((job.n, 2), dtype=np.float32)
        for part in near_far_parts(job, sr).values():
            y += part
        y *= np.float32(NEAR_FAR_LEVEL / np.sqrt(heard))
    else:
        rng = clip_rng(job.seed, job.machine, job.split, job.domain, job.label, job.index, 1)
        if job.label == "noise":
            sound = background(job.machine, job.domain, job.n, sr, rng)
        else:
            sound = _machine(job, job.n, sr, rng)
            if job.label != "clean":
                snr = S.db(job.snr_db)
                bg = background(job.machine, job.domain, job.n, sr, rng)
                sound = (sound.scaled(snr) + bg).scaled(1.0 / np.sqrt(1.0 + snr * snr))
        y = sound.audio(rng)
    y = y * np.float32(0.05 * S.db(job.gain_db))
    peak = float(np.max(np.abs(y)))
    return y * np.float32(0.95 / peak) if peak > 0.95 else y


def near_far_parts(job: ClipJob, sr: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
    """A near-far clip's parts at the two microphones, before the clip's common gain.

    name ("machine", "background", "environment", "sensor") -> ``(n, 2)`` float32, channel 0 near;
    they sum to the clip. The machine has unit power at the near microphone, the background its
    drawn SNR below it, the environment ``job.env.level_db`` above it there. A clean clip has no
    background or environment, a noise clip no machine.
    """
    if job.mic is None:
        raise ValueError(f"{job.relative}: not a near-far clip")
    rng = clip_rng(job.seed, job.machine, job.split, job.domain, job.label, job.index, 1)
    long = padded_length(job.n, sr)  # delays need head room, see microphones.place
    machine = None if job.label == "noise" else _machine(job, long, sr, rng).audio(rng)
    bg = None
    if job.label != "clean":
        a, b = (background(job.machine, job.domain, job.n, sr, rng).audio(rng) for _ in range(2))
        bg = (a, b)
    env = None
    if job.env is not None:
        env_rng = clip_rng(job.seed, job.machine, job.split, job.domain, job.label, job.index, 3)
        env = render_environment(job.env, long, sr, env_rng)
    return place(
        job.mic,
        job.n,
        sr,
        rng,
        machine=machine,
        background=bg,
        background_db=-job.snr_db,
        environment=env,
        env_db=job.env.level_db if job.env is not None else 0.0,
    )
