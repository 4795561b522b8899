"""The registered AE front end: one baseline autoencoder per machine type on log-mel frames.

With ``two_channel: true`` it reads both microphones of a two-channel recording: the frames of both
channels side by side (1280-dim vectors), or with ``noise_reference: true`` the near channel with
the far one's noise taken out (:mod:`.noise_reference`), per machine type. With ``noise_cancel:
true`` it reads the near channel with the far one cancelled from the waveform, per clip
(the ``near-anc`` channel, :mod:`stethoscope.dsp.noise_cancel`).

Each machine type trains in its own checkpoint folder ``work_dir/<machine>``; one whose training
finished there is restored, not retrained, so an interrupted study resumes at the next machine
type, and inside a machine type at its last completed epoch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stethoscope.data.clip import Clip
from stethoscope.devices import cpu_threads, resolve_device
from stethoscope.errors import ConfigError, ModelError
from stethoscope.models import persistence
from stethoscope.models.ae import noise_reference
from stethoscope.models.ae.inference import reconstruction_residuals
from stethoscope.models.ae.torch_model import DenseAE
from stethoscope.models.ae.training import AEConfig, spread_machines, train_ae
from stethoscope.models.base import FrontEnd, register_frontend
from stethoscope.progress import Progress


@register_frontend("ae")
class AEFrontEnd(FrontEnd):
    feature = "logmel"
    per_machine = True
    outputs = ("residual",)

    def __init__(self, params: dict[str, Any] | None = None, device: str = "auto") -> None:
        super().__init__(params, device)
        self.cfg = persistence.config_from(
            AEConfig, self.params, ignore=("two_channel", "noise_reference", "noise_cancel")
        )
        self.noise_reference = bool(self.params.get("noise_reference", False))
        if self.noise_reference and not self.two_channel:
            raise ConfigError("ae: noise_reference needs both channels (two_channel: true)")
        self.models: dict[str, DenseAE] = {}
        self.gains: dict[str, np.ndarray] = {}  # per machine type, with noise_reference

    def fit(
        self,
        clips: Sequence[Clip],
        inputs: Sequence[np.ndarray],
        progress: Progress | None = None,
        work_dir: Path | None = None,
    ) -> None:
        def one(machine: str) -> tuple[DenseAE, np.ndarray | None]:
            vectors = [x for c, x in zip(clips, inputs, strict=True) if c.machine == machine]
            gains = noise_reference.fit_gains(vectors) if self.noise_reference else None
            if gains is not None:
                vectors = [noise_reference.denoise(v, gains) for v in vectors]
            model, _ = train_ae(
                vectors,
                self.cfg,
                self.device,
                progress,
                work_dir=Path(work_dir) / machine if work_dir else None,
                name=f"ae {machine}",
            )
            return model.cpu(), gains

        # under torchrun each rank trains its share of the machine types; all get every model
        trained = spread_machines(sorted({c.machine for c in clips}), one)
        dev = resolve_device(self.device)
        for machine, (model, gains) in trained.items():
            self.models[machine] = model.to(dev)
            if gains is not None:
                self.gains[machine] = gains

    def transform(
        self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
    ) -> list[np.ndarray]:
        if output != "residual":
            raise ConfigError(f"the AE front end gives residuals, not '{output}'")
        dev = resolve_device(self.device)
        out: list[np.ndarray] = [np.empty(0)] * len(clips)
        with cpu_threads(self.cfg.threads, dev):
            for machine in sorted({c.machine for c in clips}):
                if machine not in self.models:
                    raise ModelError(f"no AE trained for machine type '{machine}'")
                idx = [i for i, c in enumerate(clips) if c.machine == machine]
                vectors = [inputs[i] for i in idx]
                if self.noise_reference:
                    vectors = [noise_reference.denoise(v, self.gains[machine]) for v in vectors]
                res = reconstruction_residuals(
                    self.models[machine],
                    vectors,
                    device=dev,
                    batch=self.cfg.eval_batch,
                )
                for i, r in zip(idx, res, strict=True):
                    out[i] = r
        return out

    def save(self, directory: Path) -> None:
        persistence.save(
            directory,
            self.name,
            self.cfg.to_dict(),
            dict(self.models),
            networks={m: model.config() for m, model in self.models.items()},
            gains={m: g.tolist() for m, g in self.gains.items()},
        )

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> AEFrontEnd:
        obj, meta = persistence.rebuild(cls, directory, device)
        networks = meta.get("networks")
        if not (isinstance(networks, dict) and all(isinstance(a, dict) for a in networks.values())):
            raise ModelError(f"{Path(directory) / persistence.META}: no 'networks'")
        gains = meta.get("gains") or {}
        for machine, g in gains.items():
            arr = np.asarray(g, dtype=np.float64) if isinstance(g, list) else np.empty(0)
            if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
                raise ModelError(f"{Path(directory) / persistence.META}: bad 'gains' of {machine}")
            obj.gains[machine] = arr
        if obj.noise_reference and set(obj.gains) != set(networks):
            raise ModelError(
                f"{Path(directory) / persistence.META}: 'gains' of every machine needed"
            )
        dev = resolve_device(device)
        for machine, arch in networks.items():
            obj.models[machine] = persistence.load_part(
                directory, machine, functools.partial(DenseAE, **arch), dev
            )
        return obj
