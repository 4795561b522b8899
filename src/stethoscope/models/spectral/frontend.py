"""Mean log-mel spectrum of a clip as its embedding: no training, a transparent reference system."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stethoscope.data.clip import Clip
from stethoscope.errors import ConfigError
from stethoscope.models import persistence
from stethoscope.models.base import FrontEnd, register_frontend
from stethoscope.progress import Progress


@register_frontend("spectral")
class MeanSpectrum(FrontEnd):
    feature = "logmel"
    per_machine = True
    outputs = ("embedding",)

    def fit(
        self,
        clips: Sequence[Clip],
        inputs: Sequence[np.ndarray],
        progress: Progress | None = None,
        work_dir: Path | None = None,
    ) -> None:
        """Nothing to learn: the back end holds the training statistics."""

    def transform(
        self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
    ) -> np.ndarray:
        if output != "embedding":
            raise ConfigError(f"spectral front end gives embeddings, not '{output}'")
        n_mels = int(self.params.get("n_mels", 128))
        # the first n_mels values of each 5-frame vector are one log-mel frame
        return np.stack([np.asarray(v[:, :n_mels], dtype=np.float64).mean(axis=0) for v in inputs])

    def save(self, directory: Path) -> None:
        persistence.save(directory, self.name, self.params, {})

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> MeanSpectrum:
        return persistence.rebuild(cls, directory, device)[0]
