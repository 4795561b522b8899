"""Pipeline adapter of the ACAE (report system 3): one model for all machine types, trained on the
auxiliary classes (machine x section x attributes) with noisy-ArcMix plus reconstruction."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from stethoscope import SAMPLE_RATE
from stethoscope.data.clip import Clip
from stethoscope.data.labels import class_labels
from stethoscope.models.acae.trainer import (ACAEConfig, embed, load_model, model_meta, model_state,
                                             reconstruction_error, train_acae)
from stethoscope.models.base import FrontEnd, Progress, register_frontend, resolve_device
from stethoscope.state_io import load_state, read_json, save_state, write_json


@register_frontend("acae")
class ACAEFrontEnd(FrontEnd):
    name = "acae"
    feature = "waveform"
    per_machine = False
    outputs = ("embedding", "recon-error")

    def __init__(self, params: dict | None = None, device: str = "auto") -> None:
        super().__init__(params, device)
        self.model = None
        self.head = None
        self.class_names: list[str] = []

    def _config(self, clips: Sequence[Clip], inputs: Sequence[np.ndarray]) -> ACAEConfig:
        known = {f.name for f in dataclasses.fields(ACAEConfig)}
        params = {k: v for k, v in self.params.items() if k in known}
        # model input = the longest training clip; shorter clips are tiled up to it
        params.setdefault("input_seconds", max(len(x) for x in inputs) / SAMPLE_RATE)
        params["device"] = resolve_device(self.device)
        return ACAEConfig.from_dict(params)

    def fit(self, clips: Sequence[Clip], inputs: Sequence[np.ndarray],
            progress: Progress | None = None, work_dir: Path | None = None) -> None:
        done = Path(work_dir) if work_dir else None
        if done is not None and (done / "frontend.json").exists():
            loaded = self.load(done, self.device)
            self.model, self.head, self.class_names = loaded.model, loaded.head, loaded.class_names
            return
        labels, self.class_names = class_labels(clips)
        cfg = self._config(clips, inputs)
        cb = (lambda e, n, m: progress("acae: epochs", e, n, m)) if progress else None
        self.model, self.head, _ = train_acae(list(inputs), labels, len(self.class_names), cfg,
                                              progress=cb)
        if done is not None:
            self.save(done)

    def transform(self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str) -> np.ndarray:
        dev = resolve_device(self.device)
        if output == "embedding":
            return embed(self.model, list(inputs), device=dev).astype(np.float64)
        if output == "recon-error":
            return reconstruction_error(self.model, list(inputs), device=dev).astype(np.float64)
        raise ValueError(f"the ACAE front end gives {self.outputs}, not '{output}'")

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        save_state(directory, "acae", model_state(self.model, self.head),
                   model_meta(self.model, self.head))
        write_json(directory / "frontend.json", {"name": self.name, "params": self.params,
                                                 "class_names": self.class_names})

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> "ACAEFrontEnd":
        directory = Path(directory)
        meta = read_json(directory / "frontend.json")
        obj = cls(meta["params"], device=device)
        arrays, mmeta = load_state(directory, "acae")
        obj.model, obj.head = load_model(arrays, mmeta, device=resolve_device(device))
        obj.class_names = list(meta["class_names"])
        return obj
