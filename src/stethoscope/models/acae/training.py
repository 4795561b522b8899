"""Training the ACAE (SPEC 4.3) through the shared loop.

The training clips are read a batch at a time (:mod:`stethoscope.models.clip_batches`: held on the
GPU when they fit, else gathered from the memory-mapped feature cache ahead of the step), and each
batch's features are computed on the training device when it is used, so memory holds batches,
not the features of the data set. The features are standardised per frequency bin with training
statistics, gathered in one pass over the clips before training. Each batch is mixed with a shuffled copy
of itself (mixup of the input feature maps, lam ~ Beta(mixup_alpha, mixup_alpha), one lam per
batch); the autoencoder reconstructs the mixed input it was given (MSE) and its embedding z is
trained with noisy-ArcMix on the clip labels (:mod:`.losses`). ``arcmix=False`` is the MSE-only
ablation (no head, no mixup); ``mixup_alpha=0`` keeps plain ArcFace. On the CPU it uses half the
cores unless ``threads`` says otherwise (:func:`stethoscope.devices.shared_threads`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stethoscope import SAMPLE_RATE
from stethoscope.devices import cpu_threads, resolve_device
from stethoscope.models.acae.inputs import FeatureSpec, acae_features
from stethoscope.models.acae.losses import ArcFaceHead, acae_loss
from stethoscope.models.acae.torch_model import ACAE
from stethoscope.models.clip_batches import Batch, ClipBatches
from stethoscope.models.training import EpochRandom, LoopConfig, digest, global_seed, train
from stethoscope.progress import Progress

#: longest model input accepted (a saved config asking for more is refused, not allocated)
MAX_INPUT_SECONDS = 600.0


@dataclass(frozen=True)
class ACAEConfig:
    """Everything that defines an ACAE model and its training; saved with the model."""

    input_seconds: float = 10.0  # fixed model input; shorter clips are tiled, longer ones cropped
    n_fft: int = 1024
    hop: int = 512
    avg_window: int = 3  # frames of the centred moving average (odd; 1 = none)
    max_freq_hz: float | None = None  # None keeps all bins up to Nyquist
    freq_bins: int | None = 128  # average-pool the kept STFT bins to this many (None: keep all)
    channels: tuple[int, ...] = (16, 32, 64, 128)  # encoder conv blocks; each halves freq and time
    d_model: int = 128  # width of the time tokens the attention runs on
    latent_dim: int = 128  # embedding z
    heads: int = 4
    dropout: float = 0.1
    attention: bool = True
    arcmix: bool = True
    s: float = 30.0
    m: float = 0.7
    mixup_alpha: float = 0.5
    recon_weight: float = 1.0
    arc_weight: float = 1.0
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    cosine_lr: bool = True  # cosine-anneal the learning rate to 0 over training
    grad_clip: float | None = 5.0
    seed: int = 0
    threads: int | None = None  # torch threads on the CPU (None: half the cores)
    eval_batch: int = 64  # clips per forward pass when embedding

    def __post_init__(self) -> None:
        if not 0.0 < self.input_seconds <= MAX_INPUT_SECONDS:
            raise ValueError(f"input_seconds must be in (0, {MAX_INPUT_SECONDS:g}]")
        if self.avg_window < 1 or self.avg_window % 2 == 0:
            raise ValueError(f"avg_window must be a positive odd number, got {self.avg_window}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError("channels must name at least one encoder block, each >= 1 wide")

    @property
    def input_samples(self) -> int:
        return int(round(self.input_seconds * SAMPLE_RATE))

    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(
            input_samples=self.input_samples,
            n_fft=self.n_fft,
            hop=self.hop,
            avg_window=self.avg_window,
            max_freq_hz=self.max_freq_hz,
            freq_bins=self.freq_bins,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    def fingerprint(self) -> dict[str, Any]:
        """The settings a checkpoint must share to be resumed (not threads or embedding batch)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("threads", "eval_batch")}


class _ACAETask:
    def __init__(
        self,
        model: ACAE,
        head: ArcFaceHead | None,
        data: ClipBatches,
        cfg: ACAEConfig,
        device: torch.device,
    ) -> None:
        self.modules: dict[str, torch.nn.Module] = {"model": model}
        if head is not None:
            self.modules["head"] = head
        self.model, self.head, self.data = model, head, data
        self.cfg, self.device = cfg, device
        self.spec = cfg.feature_spec()

    def batches(self, epoch: int, rand: EpochRandom) -> list[torch.Tensor]:
        return self.data.order(rand.host, self.cfg.batch_size)

    def load(self, batches: Sequence[torch.Tensor]) -> Iterator[Batch]:
        return self.data.load(batches)

    def step(
        self, batch: Batch, rand: EpochRandom
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        wave, _, y = batch
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            x = self.model.normalize(acae_features(wave, self.spec))
        n = x.shape[0]
        y_b, lam = y, 1.0
        if self.head is not None and self.cfg.mixup_alpha > 0:
            lam = float(rand.numpy.beta(self.cfg.mixup_alpha, self.cfg.mixup_alpha))
            pair = torch.randperm(n, generator=rand.host).to(self.device)
            x, y_b = lam * x + (1.0 - lam) * x[pair], y[pair]
        recon, z = self.model(x)
        loss, parts = acae_loss(
            recon,
            x,
            z,
            self.head,
            y if self.head is not None else None,
            y_b,
            lam,
            self.cfg.recon_weight,
            self.cfg.arc_weight,
        )
        return loss, parts, n

    def epoch_metrics(self) -> dict[str, float]:
        return {}


@torch.no_grad()
def feature_stats(data: ClipBatches, spec: FeatureSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin mean and standard deviation of the features of every clip, in float64, from one
    pass a batch at a time (Chan's parallel update of count, mean and squared deviations)."""
    count, mean, m2 = 0, None, None
    batches = [torch.arange(s, min(s + 64, data.n)) for s in range(0, data.n, 64)]
    for wave, _, _ in data.load([b.to(data.device) if data.on_device else b for b in batches]):
        f = acae_features(wave, spec).double()  # (B, F, T)
        n_b = f.shape[0] * f.shape[2]
        mean_b = f.mean(dim=(0, 2))
        m2_b = ((f - mean_b[None, :, None]) ** 2).sum(dim=(0, 2))
        if mean is None or m2 is None:
            count, mean, m2 = n_b, mean_b, m2_b
            continue
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    assert mean is not None and m2 is not None
    std = (m2 / (count - 1)).sqrt() if count > 1 else torch.ones_like(mean)
    return mean.float().cpu(), std.float().cpu()


def train_acae(
    waves: Sequence[np.ndarray],
    labels: np.ndarray,
    n_classes: int,
    cfg: ACAEConfig | None = None,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    work_dir: str | Path | None = None,
    name: str = "acae",
) -> tuple[ACAE, ArcFaceHead | None, list[dict[str, Any]]]:
    """Train an ACAE on normal clips; returns (model, ArcFace head or None, per-epoch history),
    both modules in eval mode. ``waves`` may read each clip when indexed (the feature cache's
    :class:`~stethoscope.features.stored.StoredFeatures`). ``work_dir`` holds the epoch
    checkpoint; training resumes from it (see :func:`stethoscope.models.training.train`)."""
    cfg = cfg or ACAEConfig()
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(waves) != labels.size:
        raise ValueError(f"{len(waves)} waves but {labels.size} labels")
    if len(waves) < 2:
        raise ValueError("ACAE training needs at least two clips (batch norm)")
    if cfg.arcmix and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}) for noisy-ArcMix")
    dev = resolve_device(device)
    fingerprint = {
        "acae": cfg.fingerprint(),
        "n_classes": n_classes,
        "data": digest(waves),
        "labels": digest([labels]),
    }
    with cpu_threads(cfg.threads, dev):
        data = ClipBatches(waves, labels, cfg.input_samples, "tile", dev)
        mean, std = feature_stats(data, cfg.feature_spec())
        with global_seed(cfg.seed):
            model = ACAE(cfg)
            head = ArcFaceHead(cfg.latent_dim, n_classes, cfg.s, cfg.m) if cfg.arcmix else None
        model.set_normalization(mean, std)
        model.to(dev)
        if head is not None:
            head.to(dev)
        task = _ACAETask(model, head, data, cfg, dev)
        loop = LoopConfig(
            name=name,
            epochs=cfg.epochs,
            seed=cfg.seed,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            schedule="cosine" if cfg.cosine_lr else "constant",
            grad_clip=cfg.grad_clip,
            threads=cfg.threads,
        )
        history = train(
            task, loop, dev, fingerprint=fingerprint, work_dir=work_dir, progress=progress
        )
    return model, head, history
