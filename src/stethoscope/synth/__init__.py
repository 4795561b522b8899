"""Synthetic machine sounds in the DCASE2025 Task 2 layout: a demo with no download, and test data.

Physically motivated sources (shaft orders, gear mesh, bearing impacts, valve and slider duty
cycles, factory background) with attribute-driven domain shift and subtle faults; see SPEC section
7.
"""

from stethoscope.synth.generator import clip_counts, generate_dataset
from stethoscope.synth.machines import DEFAULT_MACHINES, MACHINES, MachineType

__all__ = ["DEFAULT_MACHINES", "MACHINES", "MachineType", "clip_counts", "generate_dataset"]
