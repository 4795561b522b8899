"""Embeddings, multi-view embeddings and class logits of a trained dual-branch CNN (eval mode)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from stethoscope.devices import resolve_device
from stethoscope.models.clip_length import window_starts
from stethoscope.models.dualcnn.inputs import fit_length
from stethoscope.models.dualcnn.torch_model import DualBranchCNN

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _model_device(model: DualBranchCNN, device: str | torch.device | None) -> torch.device:
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    model.to(dev)
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
    model.eval()
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


def _normalise(e: np.ndarray) -> np.ndarray:
    return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def _windows(model: DualBranchCNN, waves: Sequence[np.ndarray]) -> tuple[list, np.ndarray]:
    """Each clip fitted to the model length (tiled or padded when shorter, cut into evenly spaced
    windows when longer), and the clip index of every window."""
    length, mode = model.cfg.input_len, model.cfg.fit_mode
    fitted, owner = [], []
    for i, w in enumerate(waves):
        w = np.asarray(w, dtype=np.float32).reshape(-1)
        for start in window_starts(w.shape[0], length):
            fitted.append(fit_length(w[start:], length, mode))
            owner.append(i)
    return fitted, np.asarray(owner, dtype=np.int64)


def _per_clip_mean(values: np.ndarray, owner: np.ndarray, n_clips: int) -> np.ndarray:
    sums = np.zeros((n_clips, values.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, values)
    return (sums / np.bincount(owner, minlength=n_clips)[:, None]).astype(np.float32)


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
        e = _normalise(e)
    if len(owner) != len(waves):
        e = _per_clip_mean(e, owner, len(waves))
    return _normalise(e) if normalize else e


VIEW_MODES = ("crops", "tiled")


def view_crops(
    wave: np.ndarray,
    n_views: int,
    crop_len: int | None,
    length: int,
    mode: str = "crops",
    fit_mode: str = "tile",
) -> list[tuple[np.ndarray, int]]:
    """``n_views`` views of one clip, each brought to the model's ``length`` by ``fit_mode``.

    ``"crops"``: evenly spaced overlapping crops of ``crop_len`` samples (half the clip when None),
    so every view holds other content. ``"tiled"``: the whole clip read from evenly spaced offsets
    of its tiling; each view is then a circular shift of the same signal, which the spectrum branch
    (an FFT magnitude) cannot tell apart, so the views nearly coincide.
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    n = wave.shape[0]
    if mode == "tiled":
        return [fit_length(wave, length, "tile", offset=(v * n) // n_views) for v in range(n_views)]
    if mode != "crops":
        raise ValueError(f"views must be one of {VIEW_MODES}, not {mode!r}")
    crop = min(n, crop_len if crop_len is not None else max(1, n // 2))
    starts = np.linspace(0, n - crop, n_views).round().astype(int)
    return [fit_length(wave[s : s + crop], length, fit_mode) for s in starts]


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
    crop = (
        None if crop_seconds is None else max(1, int(round(crop_seconds * model.cfg.sample_rate)))
    )
    length, fit_mode = model.cfg.input_len, model.cfg.fit_mode
    fitted = (v for w in waves for v in view_crops(w, n_views, crop, length, mode, fit_mode))
    e = _forward_fitted(model, fitted, dev, batch_size, model.embed)
    e = e.reshape(len(waves), n_views, -1)
    return _normalise(e) if normalize else e


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
    return _per_clip_mean(out, owner, len(waves)) if len(owner) != len(waves) else out
