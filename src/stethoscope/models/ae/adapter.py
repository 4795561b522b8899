"""Pipeline adapter of the official AE baseline: one autoencoder per machine type on log-mel frames.

Each machine's model is written to the work folder as soon as it is trained, so an interrupted study
resumes at the next machine type (and within a machine from the last epoch checkpoint).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from stethoscope.data.clip import Clip
from stethoscope.models.ae.trainer import (AEConfig, read_model, reconstruction_residuals,
                                           save_model, train_ae)
from stethoscope.models.base import FrontEnd, Progress, register_frontend, resolve_device
from stethoscope.state_io import read_json, write_json


@register_frontend("ae")
class AEFrontEnd(FrontEnd):
    name = "ae"
    feature = "logmel"
    per_machine = True
    outputs = ("residual",)

    def __init__(self, params: dict | None = None, device: str = "auto") -> None:
        super().__init__(params, device)
        known = {f.name for f in dataclasses.fields(AEConfig)}
        self.cfg = AEConfig(**{k: v for k, v in self.params.items() if k in known})
        self.models: dict = {}

    def fit(self, clips: Sequence[Clip], inputs: Sequence[np.ndarray],
            progress: Progress | None = None, work_dir: Path | None = None) -> None:
        machines = sorted({c.machine for c in clips})
        cfg = dataclasses.replace(self.cfg, device=resolve_device(self.device),
                                  checkpoint_every=self.cfg.checkpoint_every or 10)
        for machine in machines:
            vecs = [x for c, x in zip(clips, inputs) if c.machine == machine]
            done = work_dir / machine if work_dir else None
            if done is not None and (done / "model.json").exists():
                self.models[machine], _ = read_model(done, "model")
                continue
            cb = ((lambda e, n, m, _mc=machine: progress(f"ae {_mc}: epochs", e, n, m))
                  if progress else None)
            model, _ = train_ae(vecs, cfg, progress=cb,
                                checkpoint_dir=(done / "checkpoint") if done else None, resume=True)
            self.models[machine] = model.cpu()
            if done is not None:
                save_model(done, self.models[machine], "model")

    def transform(self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
                  ) -> list[np.ndarray]:
        if output != "residual":
            raise ValueError(f"the AE front end gives residuals, not '{output}'")
        out: list[np.ndarray | None] = [None] * len(clips)
        for machine in sorted({c.machine for c in clips}):
            if machine not in self.models:
                raise KeyError(f"no AE trained for machine type '{machine}'")
            idx = [i for i, c in enumerate(clips) if c.machine == machine]
            res = reconstruction_residuals(self.models[machine], [inputs[i] for i in idx],
                                           device=resolve_device(self.device))
            for i, r in zip(idx, res):
                out[i] = r
        return out  # type: ignore[return-value]

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        for machine, model in self.models.items():
            save_model(directory, model, f"ae_{machine}")
        write_json(directory / "frontend.json", {"name": self.name, "params": self.params,
                                                 "machines": sorted(self.models)})

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> "AEFrontEnd":
        meta = read_json(Path(directory) / "frontend.json")
        obj = cls(meta["params"], device=device)
        for machine in meta["machines"]:
            obj.models[machine], _ = read_model(directory, f"ae_{machine}")
        return obj
