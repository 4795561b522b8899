"""Extra classes for the embedding front ends when the data alone gives them little to learn.

The dual-branch CNN learns its embedding by telling the auxiliary classes apart (machine x section x
attribute). One machine type with hidden attributes gives one or two classes: the task is trivial
and the embedding says little about the machine. Two ways to make it harder, both used only in
training (the back ends never see these classes):

* ``"synthetic"``: clips of the built-in generator's machine types (:mod:`stethoscope.synth`), one
  class per machine type and attribute string, rendered in memory at the training clips' length;
  the classic outlier exposure of DCASE systems, with no download;
* ``"shifts"``: self-supervised classes: every training clip also played faster and slower (a
  pitch and speed shift by resampling), each shift a class of its own, so the embedding has to
  resolve small frequency changes, the kind many faults cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from stethoscope import SAMPLE_RATE

KINDS = ("none", "synthetic", "shifts")
#: speed factors of the "shifts" classes (1.0, the clip itself, keeps its own class)
SHIFTS = (0.94, 1.06)


def synthetic_clips(
    exclude: set[str], n_per_type: int, n_samples: int, seed: int = 99
) -> tuple[list[np.ndarray], list[str]]:
    """Waveforms and class names ("aux|<machine>|<attributes>") of built-in machine types not in
    ``exclude``, ``n_per_type`` source-domain normal clips of each."""
    from stethoscope.synth.generator import plan_machine, synthesise
    from stethoscope.synth.machines import MACHINES

    waves: list[np.ndarray] = []
    names: list[str] = []
    duration = n_samples / SAMPLE_RATE
    for name, mt in sorted(MACHINES.items()):
        if name in exclude:
            continue
        jobs = [
            j
            for j in plan_machine(Path("."), mt, seed, 1.0, duration)
            if (j.split, j.domain) == ("train", "source")
        ][:n_per_type]
        for job in jobs:
            waves.append(synthesise(job))
            names.append(f"aux|{name}|{mt.attribute_string(job.attrs)}")
    return waves, names


def shifted_clips(
    waves: Sequence[np.ndarray], labels: Sequence[str]
) -> tuple[list[np.ndarray], list[str]]:
    """Each clip resampled to play at every speed of :data:`SHIFTS`, labelled "<class>|x<speed>"."""
    out: list[np.ndarray] = []
    names: list[str] = []
    for factor in SHIFTS:
        ratio = Fraction(factor).limit_denominator(100)  # play ``factor`` times as fast
        for wave, label in zip(waves, labels):
            y = resample_poly(np.asarray(wave, np.float64), ratio.denominator, ratio.numerator)
            out.append(y.astype(np.float32))
            names.append(f"{label}|x{factor:g}")
    return out, names
