"""Train the ACAE, compute its embeddings and reconstruction errors, and (de)serialise it.

Training (SPEC 4.3): the features of all training clips are computed once (batched, on the GPU when
there is one), standardised per frequency bin with training statistics, and each batch is mixed with a
shuffled copy of itself (mixup of the INPUT feature maps, lam ~ Beta(mixup_alpha, mixup_alpha), one lam
per batch). The autoencoder reconstructs the mixed input it was given (MSE) and its embedding z is
trained with noisy-ArcMix on the clip labels (``losses``). ``arcmix=False`` is the MSE-only ablation
(no head, no mixup); ``mixup_alpha=0`` keeps plain ArcFace.

The cosine-to-centre score and minimum-covering-volume threshold are back ends; this module only
produces embeddings (and, for the ablation, reconstruction errors).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Sequence

import numpy as np
import torch

from stethoscope import SAMPLE_RATE
from stethoscope.devices import torch_device as resolve_device
from stethoscope.models.acae.features import FeatureSpec, acae_features, batch_features, stack_waves
from stethoscope.models.acae.losses import ArcFaceHead, acae_loss
from stethoscope.models.acae.torch_model import ACAE
from stethoscope.models.progress import MidEpoch

FORMAT = "stethoscope-acae"
FORMAT_VERSION = 1

Progress = Callable[[int, int, dict[str, float]], None]


@dataclass
class ACAEConfig:
    """Everything that defines an ACAE model and its training; saved with the model as JSON."""

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
    device: str = "auto"

    @property
    def input_samples(self) -> int:
        return int(round(self.input_seconds * SAMPLE_RATE))

    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(input_samples=self.input_samples, n_fft=self.n_fft, hop=self.hop,
                           avg_window=self.avg_window, max_freq_hz=self.max_freq_hz, freq_bins=self.freq_bins)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ACAEConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ACAE config keys: {sorted(unknown)}")
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d)


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def train_acae(waves: Sequence[np.ndarray], labels: np.ndarray, n_classes: int, cfg: ACAEConfig | None = None,
               progress: Progress | None = None) -> tuple[ACAE, ArcFaceHead | None, list[dict[str, float]]]:
    """Train an ACAE on normal clips; returns (model in eval mode, ArcFace head or None, per-epoch history)."""
    cfg = cfg or ACAEConfig()
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(waves) != labels.size:
        raise ValueError(f"{len(waves)} waves but {labels.size} labels")
    if len(waves) < 2:
        raise ValueError("ACAE training needs at least two clips (batch norm)")
    if cfg.arcmix and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}) for noisy-ArcMix")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    feats = batch_features(waves, cfg.feature_spec(), device)  # (N, F, T) on CPU
    mean = feats.mean(dim=(0, 2), dtype=torch.float64).float()
    std = feats.double().std(dim=(0, 2)).float() if feats.shape[0] * feats.shape[2] > 1 else torch.ones_like(mean)
    model = ACAE(cfg)
    model.set_normalization(mean, std)
    feats = model.normalize(feats)
    model.to(device)
    if _fits_on(device, feats):
        feats = feats.to(device)
    y_all = torch.from_numpy(labels).to(feats.device)

    head = ArcFaceHead(cfg.latent_dim, n_classes, cfg.s, cfg.m).to(device) if cfg.arcmix else None
    params = list(model.parameters()) + (list(head.parameters()) if head is not None else [])
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = feats.shape[0]
    steps_per_epoch = max(1, sum(1 for i in range(0, n, cfg.batch_size) if min(cfg.batch_size, n - i) >= 2))
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
             if cfg.cosine_lr and cfg.epochs > 0 else None)

    history: list[dict[str, float]] = []
    ticker = MidEpoch(progress, cfg.epochs, steps_per_epoch)
    for epoch in range(cfg.epochs):
        model.train()
        if head is not None:
            head.train()
        t0, sums, count = time.perf_counter(), {}, 0
        perm = torch.randperm(n, generator=gen).to(feats.device)
        for step, i in enumerate(range(0, n, cfg.batch_size)):
            idx = perm[i:i + cfg.batch_size]
            if idx.numel() < 2:  # batch norm cannot train on a single clip
                continue
            x, y = feats[idx].to(device), y_all[idx].to(device)
            y_b, lam = y, 1.0
            if head is not None and cfg.mixup_alpha > 0:
                lam = float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
                pair = torch.randperm(idx.numel(), generator=gen).to(device)
                x, y_b = lam * x + (1.0 - lam) * x[pair], y[pair]
            recon, z = model(x)
            loss, parts = acae_loss(recon, x, z, head, y if head is not None else None, y_b, lam,
                                    cfg.recon_weight, cfg.arc_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            if sched is not None:
                sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * idx.numel()
            count += idx.numel()
            ticker.step(epoch, step, lambda: {k: v / max(count, 1) for k, v in sums.items()})
        metrics = {k: v / max(count, 1) for k, v in sums.items()}
        metrics.update(epoch=float(epoch + 1), lr=float(opt.param_groups[0]["lr"]),
                       seconds=time.perf_counter() - t0)
        history.append(metrics)
        ticker.epoch_end()
        if progress is not None:
            progress(epoch + 1, cfg.epochs, metrics)
    model.eval()
    if head is not None:
        head.eval()
    return model, head, history


def _fits_on(device: torch.device, feats: torch.Tensor, limit_bytes: float = 4e9) -> bool:
    """Keep the training features on the accelerator when they are small enough (no per-batch copies)."""
    return device.type != "cpu" and feats.numel() * feats.element_size() < limit_bytes


@torch.no_grad()
def _batches(model: ACAE, waves: Sequence[np.ndarray], device: torch.device | str | None,
             batch_size: int, offset: int = 0):
    """Yield standardised feature batches of ``waves`` on the model's device."""
    dev = _model_device(model) if device is None else resolve_device(device)
    model.to(dev).eval()
    spec = model.cfg.feature_spec()
    for i in range(0, len(waves), batch_size):
        x = stack_waves(waves[i:i + batch_size], spec.input_samples, offset).to(dev)
        yield model.normalize(acae_features(x, spec))


@torch.no_grad()
def embed(model: ACAE, waves: Sequence[np.ndarray], device: torch.device | str | None = None,
          batch_size: int = 64, offset: int = 0) -> np.ndarray:
    """(N, latent_dim) embeddings z (not length-normalised; back ends normalise).

    ``offset`` (samples) is where each clip's tiled/cropped input window starts: several offsets give
    several views of one clip.
    """
    out = [model.encode(x)[1].float().cpu() for x in _batches(model, waves, device, batch_size, offset)]
    if not out:
        return np.zeros((0, model.cfg.latent_dim), dtype=np.float32)
    return torch.cat(out).numpy()


@torch.no_grad()
def reconstruction_error(model: ACAE, waves: Sequence[np.ndarray], device: torch.device | str | None = None,
                         batch_size: int = 64) -> np.ndarray:
    """(N,) mean squared reconstruction error of each clip's standardised features (ablation score)."""
    out = []
    for x in _batches(model, waves, device, batch_size):
        recon, _ = model(x)
        out.append(((recon - x) ** 2).mean(dim=(1, 2)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def model_state(model: ACAE, head: ArcFaceHead | None = None) -> dict[str, np.ndarray]:
    """Flat name -> array dict of the network (incl. standardisation and BN statistics) and head."""
    arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    if head is not None:
        arrays.update({f"head.{k}": v.detach().cpu().numpy() for k, v in head.state_dict().items()})
    return arrays


def model_meta(model: ACAE, head: ArcFaceHead | None = None) -> dict[str, Any]:
    """JSON-able description needed to rebuild the network from :func:`model_state`."""
    return {"format": FORMAT, "version": FORMAT_VERSION, "config": model.cfg.to_dict(),
            "n_classes": None if head is None else head.n_classes}


def load_model(arrays: dict[str, np.ndarray], meta: dict[str, Any],
               device: torch.device | str = "cpu") -> tuple[ACAE, ArcFaceHead | None]:
    """Rebuild (model, head) in eval mode from :func:`model_state` arrays and :func:`model_meta`."""
    if meta.get("format") != FORMAT:
        raise ValueError(f"not an ACAE model state (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(f"ACAE state version {meta['version']} is newer than supported ({FORMAT_VERSION})")
    cfg = ACAEConfig.from_dict(meta["config"])
    model = ACAE(cfg)
    model.load_state_dict(_prefixed(arrays, "model."))
    head = None
    if meta.get("n_classes") is not None:
        head = ArcFaceHead(cfg.latent_dim, int(meta["n_classes"]), cfg.s, cfg.m)
        head.load_state_dict(_prefixed(arrays, "head."))
        head.to(resolve_device(device)).eval()
    return model.to(resolve_device(device)).eval(), head


def _prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)}
