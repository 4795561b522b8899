"""The registered dual-branch CNN front end (Wilkinghoff): one model for all machine types, trained
on the auxiliary classes; it feeds the k-means, DensitySoftmax and DtMM back ends.

Ensembles (``ensemble: N``) train N seeds, member k in ``work_dir/member_k`` (a finished member is
restored, not retrained). A clip's embedding is the concatenation of the members' length-normalised
embeddings scaled by 1/sqrt(N) (unit length overall); the pipeline fits one back end per member
and averages their scores (:mod:`stethoscope.backends.ensemble`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stethoscope.audio import AudioError, load_audio
from stethoscope.data.clip import Clip
from stethoscope.data.labels import class_labels, section_columns
from stethoscope.data.naming import NamingError, parse_name
from stethoscope.devices import cpu_threads, resolve_device
from stethoscope.errors import ConfigError, ModelError
from stethoscope.models import persistence
from stethoscope.models.base import FrontEnd, register_frontend
from stethoscope.models.clip_length import typical_length
from stethoscope.models.dualcnn import auxiliary
from stethoscope.models.dualcnn.inference import VIEW_MODES, embed, embed_views, logits
from stethoscope.models.dualcnn.losses import SubClusterAdaCos
from stethoscope.models.dualcnn.torch_model import ArchConfig, DualBranchCNN
from stethoscope.models.dualcnn.training import DualCNNConfig, train_dualcnn
from stethoscope.progress import Progress

log = logging.getLogger(__name__)


@register_frontend("dualcnn")
class DualCNNFrontEnd(FrontEnd):
    feature = "waveform"
    per_machine = False
    outputs = ("embedding", "views", "embedding-logits")

    def __init__(self, params: dict[str, Any] | None = None, device: str = "auto") -> None:
        super().__init__(params, device)
        own = (
            "ensemble",
            "n_views",
            "crop_seconds",
            "views",
            "auxiliary",
            "aux_clips",
            "two_channel",
        )
        if self.two_channel:
            raise ConfigError("dualcnn: takes one channel (two_channel is not supported)")
        self.cfg = persistence.config_from(DualCNNConfig, self.params, ignore=own)
        self.ensemble = int(self.params.get("ensemble", 1))
        self.n_views = int(self.params.get("n_views", 8))
        self.crop_seconds: float | None = self.params.get("crop_seconds")
        self.views = str(self.params.get("views", "crops"))
        self.auxiliary = str(self.params.get("auxiliary", "none"))
        self.aux_clips = int(self.params.get("aux_clips", 100))
        if self.auxiliary not in auxiliary.KINDS:
            raise ConfigError(f"dualcnn: auxiliary must be one of {auxiliary.KINDS}")
        if self.ensemble < 1 or self.n_views < 1:
            raise ConfigError("dualcnn: ensemble and n_views must be >= 1")
        if self.views not in VIEW_MODES:
            raise ConfigError(f"dualcnn: views must be one of {VIEW_MODES}, not {self.views!r}")
        self.members: list[DualBranchCNN] = []
        self.class_names: list[str] = []
        self.n_data_classes = 0  # the data's own classes come first in class_names
        self._memo: dict[tuple[str, str], np.ndarray] = {}

    @property
    def n_members(self) -> int:
        return len(self.members) or self.ensemble

    def fit(
        self,
        clips: Sequence[Clip],
        inputs: Sequence[np.ndarray],
        progress: Progress | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self._memo.clear()
        labels, self.class_names = class_labels(clips)
        self.n_data_classes = len(self.class_names)
        inputs, labels = self._with_auxiliary(clips, inputs, labels)
        noise = _supplemental_noise(clips) if self.cfg.supplemental_noise else None
        self.members = []
        for k in range(self.ensemble):
            cfg = dataclasses.replace(self.cfg, seed=self.cfg.seed + k)
            model, _ = train_dualcnn(
                inputs,
                labels,
                len(self.class_names),
                cfg,
                self.device,
                progress,
                noise,
                work_dir=Path(work_dir) / f"member_{k}" if work_dir else None,
                name="dualcnn" if self.ensemble == 1 else f"dualcnn seed {cfg.seed}",
            )
            self.members.append(model)

    def _with_auxiliary(
        self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], labels: np.ndarray
    ) -> tuple[Sequence[np.ndarray], np.ndarray]:
        """The training clips and their labels, with this front end's auxiliary classes after the
        data's own (``self.class_names`` grows by them; see :mod:`.auxiliary`)."""
        if self.auxiliary == "none":
            if len(self.class_names) <= 2:
                log.warning(
                    "dualcnn: the training clips form %d class(es) (machine x section x "
                    "attribute), too few for the classification loss to shape the embedding; "
                    "'auxiliary: synthetic' adds the built-in generator's machine types as "
                    "classes (README: one machine, no attribute labels)", len(self.class_names),
                )  # fmt: skip
            return inputs, labels
        if self.auxiliary == "synthetic":
            n = typical_length(inputs, self.cfg.sample_rate, self.cfg.max_input_seconds)
            extra, names = auxiliary.synthetic_clips(
                {c.machine for c in clips}, self.aux_clips, n, seed=self.cfg.seed + 99
            )
        else:
            extra, names = auxiliary.shifted_clips(inputs, [c.class_name() for c in clips])
        new = sorted(set(names) - set(self.class_names))
        self.class_names = self.class_names + new
        index = {name: i for i, name in enumerate(self.class_names)}
        extra_labels = np.array([index[n] for n in names], dtype=labels.dtype)
        log.info("dualcnn: %d auxiliary clips in %d classes (%s)", len(extra), len(new),
                 self.auxiliary)  # fmt: skip
        return [*inputs, *extra], np.concatenate([labels, extra_labels])

    def transform(
        self, clips: Sequence[Clip], inputs: Sequence[np.ndarray], output: str
    ) -> np.ndarray:
        """Embeddings are memoised per clip: the back ends of one study share one forward pass."""
        if output not in self.outputs:
            raise ConfigError(f"the dual-branch CNN gives {self.outputs}, not '{output}'")
        if output == "embedding-logits":
            return self._embedding_logits(clips, inputs)
        todo = [i for i, c in enumerate(clips) if (output, str(c.path)) not in self._memo]
        if todo:
            fresh = self._compute([inputs[i] for i in todo], output)
            for i, row in zip(todo, fresh, strict=True):
                self._memo[(output, str(clips[i].path))] = row
        return np.stack([self._memo[(output, str(c.path))] for c in clips])

    def forget(self) -> None:
        self._memo.clear()

    def _compute(self, waves: list[np.ndarray], output: str) -> np.ndarray:
        if not self.members:
            raise ModelError("the dual-branch CNN is not trained")
        dev = resolve_device(self.device)
        b = self.cfg.eval_batch
        with cpu_threads(self.cfg.threads, dev):
            if output == "embedding":
                parts = [embed(m, waves, dev, b, normalize=True) for m in self.members]
            else:
                parts = [
                    embed_views(m, waves, self.n_views, self.crop_seconds, dev, b, True, self.views)
                    for m in self.members
                ]
        return (np.concatenate(parts, axis=-1) / np.sqrt(len(parts))).astype(np.float64)

    def _embedding_logits(self, clips: Sequence[Clip], inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Per member [embedding | the head's logits of the clips' section classes] / sqrt(N):
        the section's classes in the order ``data.labels.class_labels`` gives them."""
        cols = section_columns(self.class_names[: self.n_data_classes], clips)
        emb = self.transform(clips, inputs, "embedding") * np.sqrt(len(self.members))
        dev = resolve_device(self.device)
        parts = []
        with cpu_threads(self.cfg.threads, dev):
            for k, m in enumerate(self.members):
                d = m.emb_dim
                lg = logits(m, list(inputs), dev, self.cfg.eval_batch, best_subcluster=True)
                parts.append(np.concatenate([emb[:, k * d : (k + 1) * d], lg[:, cols]], axis=1))
        return (np.concatenate(parts, axis=-1) / np.sqrt(len(parts))).astype(np.float64)

    def save(self, directory: Path) -> None:
        if not self.members:
            raise ModelError("the dual-branch CNN is not trained; nothing to save")
        head = self.members[0].head
        assert head is not None
        config = {
            **self.cfg.to_dict(),
            "ensemble": self.ensemble,
            "n_views": self.n_views,
            "crop_seconds": self.crop_seconds,
            "views": self.views,
            "auxiliary": self.auxiliary,
            "aux_clips": self.aux_clips,
        }
        persistence.save(
            directory,
            self.name,
            config,
            {f"member_{k}": m for k, m in enumerate(self.members)},
            arch=self.members[0].cfg.to_dict(),
            n_classes=head.n_classes,
            class_names=self.class_names,
            n_data_classes=self.n_data_classes,
            members=len(self.members),
        )

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> DualCNNFrontEnd:
        obj, meta = persistence.rebuild(cls, directory, device)
        try:
            arch = ArchConfig(**meta["arch"])
            n_classes, members = int(meta["n_classes"]), int(meta["members"])
            obj.class_names = [str(c) for c in meta["class_names"]]
            obj.n_data_classes = int(meta.get("n_data_classes", len(obj.class_names)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"{Path(directory) / persistence.META}: bad dual-branch CNN description ({exc})"
            ) from exc

        def build() -> DualBranchCNN:
            model = DualBranchCNN(arch)
            model.head = SubClusterAdaCos(model.emb_dim, n_classes, obj.cfg.n_subclusters)
            return model

        dev = resolve_device(device)
        obj.members = [
            persistence.load_part(directory, f"member_{k}", build, dev).to(
                memory_format=torch.channels_last
            )  # type: ignore[call-overload]
            for k in range(members)
        ]
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
