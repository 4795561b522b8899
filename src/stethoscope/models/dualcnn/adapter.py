"""Pipeline adapter of the dual-branch CNN (Wilkinghoff): one model for all machine types, trained
on the auxiliary classes; it feeds the k-means, DensitySoftmax and DtMM back ends.

Ensembles (``ensemble: N``) train N seeds; a clip's embedding is the concatenation of the members'
length-normalised embeddings scaled by 1/sqrt(N) (unit length overall); the pipeline then fits one
back end per member and averages their scores (:mod:`stethoscope.backends.ensemble`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from stethoscope.audio import AudioError, load_audio
from stethoscope.data.clip import Clip
from stethoscope.data.labels import class_labels
from stethoscope.data.naming import NamingError, parse_name
from stethoscope.models.base import FrontEnd, Progress, register_frontend, resolve_device
from stethoscope.models.dualcnn.trainer import (DualCNNConfig, embed, embed_views, load_model,
                                                model_meta, model_state, train_dualcnn)
from stethoscope.state_io import load_state, read_json, save_state, write_json

log = logging.getLogger(__name__)


@register_frontend("dualcnn")
class DualCNNFrontEnd(FrontEnd):
    name = "dualcnn"
    feature = "waveform"
    per_machine = False
    outputs = ("embedding", "views")

    def __init__(self, params: dict | None = None, device: str = "auto") -> None:
        super().__init__(params, device)
        self.members: list = []
        self.class_names: list[str] = []
        self._memo: dict[tuple[str, str], np.ndarray] = {}

    @property
    def n_members(self) -> int:
        return max(1, len(self.members))

    @property
    def n_views(self) -> int:
        return int(self.params.get("n_views", 8))

    @property
    def crop_seconds(self) -> float | None:
        return self.params.get("crop_seconds")

    def _config(self, seed: int) -> DualCNNConfig:
        known = {f.name for f in dataclasses.fields(DualCNNConfig)}
        params = {k: v for k, v in self.params.items() if k in known}
        if "noise_snr_db" in params:
            params["noise_snr_db"] = tuple(params["noise_snr_db"])
        params.update(seed=seed, device=resolve_device(self.device))
        return DualCNNConfig(**params)

    def fit(self, clips: Sequence[Clip], inputs: Sequence[np.ndarray],
            progress: Progress | None = None, work_dir: Path | None = None) -> None:
        self._memo.clear()
        labels, self.class_names = class_labels(clips)
        n = int(self.params.get("ensemble", 1))
        seed0 = int(self.params.get("seed", 0))
        noise = _supplemental_noise(clips) if self.params.get("supplemental_noise") else None
        self.members = []
        for k in range(n):
            member_dir = Path(work_dir) / f"member_{k}" if work_dir else None
            if member_dir is not None and (member_dir / "dualcnn.json").exists():
                arrays, meta = load_state(member_dir, "dualcnn")
                self.members.append(load_model(arrays, meta, device=resolve_device(self.device)))
                continue
            stage = "dualcnn: epochs" if n == 1 else f"dualcnn seed {seed0 + k}: epochs"
            cb = (lambda e, t, m, _s=stage: progress(_s, e, t, m)) if progress else None
            model, _ = train_dualcnn(list(inputs), labels, len(self.class_names),
                                     self._config(seed0 + k), progress=cb, noise_waves=noise)
            self.members.append(model)
            if member_dir is not None:
                save_state(member_dir, "dualcnn", model_state(model), model_meta(model))

    def transform(self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str) -> np.ndarray:
        """Embeddings are memoised per clip: the back ends of one study share one forward pass."""
        todo = [i for i, c in enumerate(clips) if (output, str(c.path)) not in self._memo]
        if todo:
            fresh = self._compute([inputs[i] for i in todo], output)
            for i, row in zip(todo, fresh):
                self._memo[(output, str(clips[i].path))] = row
        return np.stack([self._memo[(output, str(c.path))] for c in clips])

    def _compute(self, waves: list[np.ndarray], output: str) -> np.ndarray:
        dev = resolve_device(self.device)
        if output == "embedding":
            parts = [embed(m, waves, device=dev, normalize=True) for m in self.members]
        elif output == "views":
            parts = [embed_views(m, waves, self.n_views, self.crop_seconds, device=dev, normalize=True)
                     for m in self.members]
        else:
            raise ValueError(f"the dual-branch CNN gives {self.outputs}, not '{output}'")
        return (np.concatenate(parts, axis=-1) / np.sqrt(len(parts))).astype(np.float64)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        for k, m in enumerate(self.members):
            save_state(directory, f"dualcnn_{k}", model_state(m), model_meta(m))
        write_json(directory / "frontend.json", {"name": self.name, "params": self.params,
                                                 "class_names": self.class_names,
                                                 "members": len(self.members)})

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> "DualCNNFrontEnd":
        directory = Path(directory)
        meta = read_json(directory / "frontend.json")
        obj = cls(meta["params"], device=device)
        obj.class_names = list(meta["class_names"])
        for k in range(int(meta["members"])):
            arrays, mmeta = load_state(directory, f"dualcnn_{k}")
            obj.members.append(load_model(arrays, mmeta, device=resolve_device(device)))
        return obj


def _supplemental_noise(clips: Sequence[Clip]) -> list[np.ndarray]:
    """Noise-only supplemental clips of the training machines (DCASE2025 supplemental/ folder)."""
    out = []
    for folder in sorted({c.path.parent.parent / "supplemental" for c in clips}):
        for path in sorted(folder.glob("*.wav")) if folder.is_dir() else []:
            try:
                if parse_name(path.name).label != "noise":
                    continue
                out.append(load_audio(path))
            except (NamingError, AudioError) as exc:
                log.warning("supplemental clip skipped: %s", exc)
    if not out:
        log.warning("supplemental_noise is on but no noise clips were found; training without")
    return out
