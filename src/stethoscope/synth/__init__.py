"""Synthetic machine sounds in the DCASE2025 Task 2 layout: a demo with no download, and test data.

Physically motivated sources (shaft orders, gear mesh, bearing impacts, valve and slider duty
cycles, factory background) with attribute-driven domain shift and subtle faults; see SPEC section
7. ``channels="near-far"`` writes two-channel clips in the DCASE2026 manner instead (a microphone
near the machine and one farther away, with strong environmental noise).
"""

from stethoscope.synth.generator import (
    NEAR_FAR_DURATIONS,
    NEAR_FAR_NOISE_DB,
    clip_counts,
    clip_durations,
    generate_dataset,
)
from stethoscope.synth.machines import DEFAULT_MACHINES, MACHINES, MachineType

__all__ = [
    "DEFAULT_MACHINES",
    "MACHINES",
    "NEAR_FAR_DURATIONS",
    "NEAR_FAR_NOISE_DB",
    "MachineType",
    "clip_counts",
    "clip_durations",
    "generate_dataset",
]
