"""The front ends of an export, in numpy around their ONNX networks (no torch).

Each reproduces its torch front end's ``transform``: the same back-end input for the same clips
and features. The numpy steps both paths take come from :mod:`stethoscope.dsp`; the networks are
the exported graphs (:mod:`.networks`). Here: the per-machine AE (frame vectors, the noise
reference when the model has one, residuals) and the spectral front end (no network); the
dual-branch CNN and the ACAE have a module each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stethoscope.data.clip import Clip
from stethoscope.dsp import noise_reference
from stethoscope.errors import ConfigError, ModelError
from stethoscope.export.manifest import MANIFEST, field
from stethoscope.export.sessions import Network

#: what a front end hands a back end: (N, D), (N, V, D), (N,) or per-clip (T_i, D) arrays
BackendInput = np.ndarray | list[np.ndarray]


class NumpyFrontEnd(ABC):
    """An exported front end: features of clips in, back-end inputs out."""

    def __init__(self, directory: Path, meta: dict[str, Any], feature: dict[str, Any]) -> None:
        self.directory, self.meta, self.feature = directory, meta, feature

    @abstractmethod
    def transform(
        self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
    ) -> BackendInput: ...


class AEFrontEnd(NumpyFrontEnd):
    """One autoencoder per machine type; residuals ``x - x_hat`` of each clip's frame vectors."""

    def __init__(
        self,
        directory: Path,
        meta: dict[str, Any],
        feature: dict[str, Any],
        threads: int | None = None,
    ) -> None:
        super().__init__(directory, meta, feature)
        networks = field(meta, "networks", dict, directory)
        self.networks = {
            m: Network(directory, e, f"the AE of {m}", threads) for m, e in networks.items()
        }
        self.batch = int(meta.get("batch") or 16384)
        self.noise_reference = bool(meta.get("noise_reference", False))
        gains = meta.get("gains") or {}
        self.gains = {m: np.asarray(g, dtype=np.float64) for m, g in gains.items()}
        if self.noise_reference and set(self.gains) != set(self.networks):
            raise ModelError(
                f"{directory / MANIFEST}: the noise reference's gains of every machine"
            )
        c = feature.get("config") or {}
        self.n_mels, self.n_frames = int(c.get("n_mels", 128)), int(c.get("n_frames", 5))
        self.power = float(c.get("power", 2.0))

    def transform(
        self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
    ) -> list[np.ndarray]:
        if output != "residual":
            raise ConfigError(f"the AE front end gives residuals, not '{output}'")
        out: list[np.ndarray] = [np.empty(0)] * len(clips)
        for machine in sorted({c.machine for c in clips}):
            if machine not in self.networks:
                raise ModelError(f"no AE exported for machine type '{machine}'")
            idx = [i for i, c in enumerate(clips) if c.machine == machine]
            vectors = [inputs[i] for i in idx]
            if self.noise_reference:
                vectors = [
                    noise_reference.denoise(
                        v, self.gains[machine], self.n_mels, self.n_frames, self.power
                    )
                    for v in vectors
                ]
            for i, r in zip(idx, self._residuals(self.networks[machine], vectors), strict=True):
                out[i] = r
        return out

    def _residuals(self, network: Network, vectors: list[np.ndarray]) -> list[np.ndarray]:
        dim = vectors[0].shape[-1] if vectors else 0
        xs = np.concatenate([np.asarray(v, dtype=np.float32).reshape(-1, dim) for v in vectors])
        res = np.empty_like(xs)
        for s in range(0, len(xs), self.batch):
            res[s : s + self.batch] = network.run(xs[s : s + self.batch])[0]
        bounds = np.cumsum([len(v) for v in vectors])[:-1]
        return np.split(res, bounds)


class SpectralFrontEnd(NumpyFrontEnd):
    """The mean log-mel spectrum of a clip (no network, nothing trained)."""

    def transform(
        self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
    ) -> np.ndarray:
        if output != "embedding":
            raise ConfigError(f"spectral front end gives embeddings, not '{output}'")
        n_mels = int(self.meta.get("n_mels", 128))
        # the first n_mels values of each 5-frame vector are one log-mel frame
        return np.stack([np.asarray(v[:, :n_mels], dtype=np.float64).mean(axis=0) for v in inputs])


def load_frontend(
    directory: Path, meta: dict[str, Any], feature: dict[str, Any], threads: int | None = None
) -> NumpyFrontEnd:
    """The exported front end the manifest's ``frontend`` entry describes."""
    name = meta.get("name")
    if name == "ae":
        return AEFrontEnd(directory, meta, feature, threads)
    if name == "spectral":
        return SpectralFrontEnd(directory, meta, feature)
    if name == "dualcnn":
        from stethoscope.export.dualcnn import DualCNNFrontEnd

        return DualCNNFrontEnd(directory, meta, feature, threads)
    if name == "acae":
        from stethoscope.export.acae import ACAEFrontEnd

        return ACAEFrontEnd(directory, meta, feature, threads)
    raise ModelError(f"{directory / MANIFEST}: unknown front end {name!r}")
