"""The front-end contract: everything the pipeline asks of a trained model, whatever its architecture.

A front end turns clips (their cached features) into back-end inputs. Each front end lives in its
own package (``models/<name>/``) with the torch module, its training and its inference in separate
modules; the class registered here only wires clips and features to them, so the same pipeline
trains the per-machine AE and the joint dual-branch CNN.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from stethoscope.data.channels import takes_two_channels
from stethoscope.data.clip import Clip
from stethoscope.progress import Progress
from stethoscope.registry import Registry

#: What a front end hands a back end for a group of clips: (N, D) embeddings, (N, V, D) views, (N,)
#: scores, or a list of per-clip (T_i, D) arrays (AE residuals).
BackendInput = np.ndarray | list[np.ndarray]


class FrontEnd(ABC):
    """A trainable (or fixed) model from cached features to back-end inputs."""

    #: registry name, set by :func:`register_frontend`
    name: ClassVar[str] = ""
    #: the cached feature it reads ("logmel", "waveform")
    feature: ClassVar[str] = "waveform"
    #: True: one model per machine type (AE); False: one model for all machine types (CNN, ACAE)
    per_machine: ClassVar[bool] = False
    #: the back-end inputs it can produce; a system's back end must take one of them
    outputs: ClassVar[tuple[str, ...]] = ("embedding",)

    def __init__(self, params: dict[str, Any] | None = None, device: str = "auto") -> None:
        self.params = dict(params or {})
        self.device = device

    @property
    def two_channel(self) -> bool:
        """Whether it takes both microphones of a two-channel recording (``two_channel: true``)."""
        return takes_two_channels(self.params)

    @property
    def n_members(self) -> int:
        """Ensemble members side by side in every output; the pipeline fits one back end each."""
        return 1

    @abstractmethod
    def fit(
        self,
        clips: Sequence[Clip],
        inputs: Sequence[np.ndarray],
        progress: Progress | None = None,
        work_dir: Path | None = None,
    ) -> None:
        """Train on normal training clips (their cached features in ``inputs``).

        ``work_dir`` holds epoch checkpoints: a training interrupted there resumes where it stopped
        when ``fit`` is called again with the same data and parameters.
        """

    @abstractmethod
    def transform(
        self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
    ) -> BackendInput:
        """Back-end inputs of kind ``output`` (one of :attr:`outputs`) for ``clips``."""

    def forget(self) -> None:
        """Drop anything remembered about clips already transformed (nothing, unless a front end
        memoises its outputs)."""
        return None

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the trained state (safetensors + JSON) into ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, device: str = "auto") -> FrontEnd:
        """Rebuild a trained front end written by :meth:`save`."""


FRONTENDS: Registry[type[FrontEnd]] = Registry("front end")
F = TypeVar("F", bound=type[FrontEnd])


def register_frontend(name: str) -> Callable[[F], F]:
    """Class decorator: register a front end under ``name`` and make ``name`` its ``.name``."""

    def deco(cls: F) -> F:
        cls.name = name
        FRONTENDS.register(name)(cls)
        return cls

    return deco
