"""Embeddings, multi-view embeddings and class logits of a trained dual-branch CNN (eval mode)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from stethoscope.devices import module_on, resolve_device
from stethoscope.dsp.windows import (
    VIEW_MODES,
    clip_windows,
    crop_samples,
    fit_length,
    normalise,
    per_clip_mean,
    view_crops,
)
from stethoscope.models.dualcnn.torch_model import DualBranchCNN

__all__ = ["VIEW_MODES", "embed", "embed_views", "logits", "view_crops"]

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _model_device(model: DualBranchCNN, device: str | torch.device | None) -> torch.device:
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    module_on(model, dev)
    return dev


@torch.no_grad()
def _forward_fitted(
    model: DualBranchCNN,
    fitted: Iterable[tuple[np.ndarray, int]],
    dev: torch.device,
    batch_size: int,
    fn: Forward,
) -> np.ndarray:
    """``fn`` over batches of fitted clips, taken lazily from ``fitted``.

    Lazily, because a back end asks for several views of each clip (DtMM: 8 x 640 KB per 10 s clip,
    5 GB for a machine type's 1,000 training clips if built up front). On a GPU the batch goes
    through pinned memory and the outputs stay on the device until the end, so the host fits and
    stacks batch i+1 while the GPU works on batch i.
    """
    outs = []
    cuda = dev.type == "cuda"
    it = iter(fitted)
    while chunk := list(itertools.islice(it, batch_size)):
        wave = torch.from_numpy(np.stack([w for w, _ in chunk]))
        real_len = torch.tensor([n for _, n in chunk], dtype=torch.long)
        if cuda:
            wave, real_len = wave.pin_memory(), real_len.pin_memory()
        out = fn(wave.to(dev, non_blocking=cuda), real_len.to(dev, non_blocking=cuda)).float()
        outs.append(out if cuda else out.cpu())
    return torch.cat(outs).cpu().numpy() if outs else np.zeros((0, model.emb_dim), np.float32)


def _windows(model: DualBranchCNN, waves: Sequence[np.ndarray]) -> tuple[list, np.ndarray]:
    """Each clip fitted to the model length (tiled or padded when shorter, cut into evenly spaced
    windows when longer), and the clip index of every window."""
    length, mode = model.cfg.input_len, model.cfg.fit_mode
    parts, owner = clip_windows(waves, length)
    return [fit_length(w, length, mode) for w in parts], owner


def embed(
    model: DualBranchCNN,
    waves: Sequence[np.ndarray],
    device: str | torch.device | None = None,
    batch_size: int = 64,
    normalize: bool = False,
) -> np.ndarray:
    """(N, 256) clip embeddings; a clip longer than the model length is the mean of its windows'
    embeddings (each length-normalised first when ``normalize``)."""
    dev = _model_device(model, device)
    fitted, owner = _windows(model, waves)
    e = _forward_fitted(model, fitted, dev, batch_size, model.embed)
    if normalize:
        e = normalise(e)
    e = per_clip_mean(e, owner, len(waves))
    return normalise(e) if normalize else e


def embed_views(
    model: DualBranchCNN,
    waves: Sequence[np.ndarray],
    n_views: int = 8,
    crop_seconds: float | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    normalize: bool = False,
    mode: str = "crops",
) -> np.ndarray:
    """(N, n_views, 256) embeddings of several views of each clip (for the DtMM back end)."""
    if n_views < 1:
        raise ValueError("n_views must be >= 1")
    dev = _model_device(model, device)
    crop = crop_samples(crop_seconds, model.cfg.sample_rate)
    length, fit_mode = model.cfg.input_len, model.cfg.fit_mode
    fitted = (v for w in waves for v in view_crops(w, n_views, crop, length, mode, fit_mode))
    e = _forward_fitted(model, fitted, dev, batch_size, model.embed)
    e = e.reshape(len(waves), n_views, -1)
    return normalise(e) if normalize else e


def logits(
    model: DualBranchCNN,
    waves: Sequence[np.ndarray],
    device: str | torch.device | None = None,
    batch_size: int = 64,
    best_subcluster: bool = False,
) -> np.ndarray:
    """(N, C) class logits of the main AdaCos head: log-sum-exp over each class's sub-clusters
    (softmax = the head's class posterior), or with ``best_subcluster`` the scale times the cosine
    to the nearest sub-cluster (DensitySoftmax's logits)."""
    head = model.head
    if head is None:
        raise ValueError("model has no classifier head attached")
    dev = _model_device(model, device)
    fitted, owner = _windows(model, waves)
    fn = head.best_subcluster_logits if best_subcluster else head.class_logits
    out = _forward_fitted(model, fitted, dev, batch_size, lambda w, n: fn(model.embed(w, n)))
    return per_clip_mean(out, owner, len(waves))
