"""The registered ACAE front end (report system 3): one model for all machine types, trained on
the auxiliary classes (machine x section x attributes) with noisy-ArcMix plus reconstruction.
The training checkpoint lives in ``work_dir``; a finished training there is restored, not redone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stethoscope import SAMPLE_RATE
from stethoscope.data.clip import Clip
from stethoscope.data.labels import class_labels
from stethoscope.devices import cpu_threads, resolve_device
from stethoscope.errors import ConfigError, ModelError
from stethoscope.models import persistence
from stethoscope.models.acae.inference import embed, reconstruction_error
from stethoscope.models.acae.losses import ArcFaceHead
from stethoscope.models.acae.torch_model import ACAE
from stethoscope.models.acae.training import ACAEConfig, train_acae
from stethoscope.models.base import FrontEnd, register_frontend
from stethoscope.models.clip_length import typical_length
from stethoscope.progress import Progress


@register_frontend("acae")
class ACAEFrontEnd(FrontEnd):
    feature = "waveform"
    per_machine = False
    outputs = ("embedding", "recon-error")

    def __init__(self, params: dict[str, Any] | None = None, device: str = "auto") -> None:
        super().__init__(params, device)
        if self.two_channel:
            raise ConfigError("acae: takes one channel (two_channel is not supported)")
        self.cfg = persistence.config_from(ACAEConfig, self.params, ignore=("two_channel",))
        self.model: ACAE | None = None
        self.head: ArcFaceHead | None = None
        self.class_names: list[str] = []

    def fit(
        self,
        clips: Sequence[Clip],
        inputs: Sequence[np.ndarray],
        progress: Progress | None = None,
        work_dir: Path | None = None,
    ) -> None:
        if "input_seconds" not in self.params:  # see models/clip_length.py
            typical = typical_length(inputs, SAMPLE_RATE) / SAMPLE_RATE
            self.cfg = dataclasses.replace(self.cfg, input_seconds=typical)
        labels, self.class_names = class_labels(clips)
        self.model, self.head, _ = train_acae(
            inputs,
            labels,
            len(self.class_names),
            self.cfg,
            self.device,
            progress,
            Path(work_dir) if work_dir else None,
        )

    def transform(
        self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
    ) -> np.ndarray:
        if self.model is None:
            raise ModelError("the ACAE is not trained")
        dev = resolve_device(self.device)
        with cpu_threads(self.cfg.threads, dev):
            if output == "embedding":
                out = embed(self.model, list(inputs), dev, self.cfg.eval_batch)
            elif output == "recon-error":
                out = reconstruction_error(self.model, list(inputs), dev, self.cfg.eval_batch)
            else:
                raise ConfigError(f"the ACAE front end gives {self.outputs}, not '{output}'")
        return out.astype(np.float64)

    def save(self, directory: Path) -> None:
        if self.model is None:
            raise ModelError("the ACAE is not trained; nothing to save")
        parts = {"model": self.model, **({"head": self.head} if self.head is not None else {})}
        persistence.save(
            directory,
            self.name,
            self.cfg.to_dict(),
            parts,
            n_classes=None if self.head is None else self.head.n_classes,
            class_names=self.class_names,
        )

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> ACAEFrontEnd:
        obj, meta = persistence.rebuild(cls, directory, device)
        cfg, n_classes = obj.cfg, meta.get("n_classes")
        if n_classes is not None and not isinstance(n_classes, int):
            raise ModelError(f"{Path(directory) / persistence.META}: bad n_classes {n_classes!r}")
        dev = resolve_device(device)
        obj.model = persistence.load_part(directory, "model", lambda: ACAE(cfg), dev)
        if n_classes is not None:
            n = n_classes
            obj.head = persistence.load_part(
                directory, "head", lambda: ArcFaceHead(cfg.latent_dim, n, cfg.s, cfg.m), dev
            )
        obj.class_names = [str(c) for c in meta.get("class_names", [])]
        return obj
