"""Front-end interface: what the pipeline needs from a trained model, whatever its architecture.

A front end turns clips into back-end inputs. Its training logic lives beside its torch module
(``models/<name>/trainer.py``); this adapter only wires clips and cached features to it, so the same
pipeline trains the per-machine AE and the joint dual-branch CNN.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from stethoscope.data.clip import Clip
from stethoscope.registry import Registry

#: progress(stage, done, total, info) — the CLI renders it; models never print.
Progress = Callable[[str, int, int, dict], None]


class FrontEnd(ABC):
    name: str = ""
    #: cached feature the front end reads ("logmel", "waveform")
    feature: str = "waveform"
    #: True: one model per machine type (AE); False: one model for all machine types (CNN, ACAE)
    per_machine: bool = False
    #: back-end inputs this front end can produce
    outputs: tuple[str, ...] = ("embedding",)

    def __init__(self, params: dict[str, Any] | None = None, device: str = "auto") -> None:
        self.params = dict(params or {})
        self.device = device

    @abstractmethod
    def fit(self, clips: Sequence[Clip], inputs: Sequence[np.ndarray],
            progress: Progress | None = None, work_dir: Path | None = None) -> None:
        """Train on normal training clips (their cached features in ``inputs``)."""

    @abstractmethod
    def transform(self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
                  ) -> np.ndarray | list[np.ndarray]:
        """Back-end inputs for ``clips``: (N, D) embeddings, (N, V, D) views or per-clip arrays."""

    @abstractmethod
    def save(self, directory: Path) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, device: str = "auto") -> "FrontEnd": ...


FRONTENDS: Registry[type[FrontEnd]] = Registry("front end")
register_frontend = FRONTENDS.register


def resolve_device(device: str) -> str:
    """The device name the trainers get ('auto' resolved), as a string for JSON configs."""
    from stethoscope.devices import torch_device

    return str(torch_device(device))
