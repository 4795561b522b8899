"""Reconstruction residuals of the baseline AE: what the AE-MSE and AE-MAHALA back ends score."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from stethoscope.devices import module_on, resolve_device
from stethoscope.models.ae.torch_model import DenseAE


@torch.no_grad()
def reconstruction_residuals(
    model: DenseAE,
    clip_vectors: Sequence[np.ndarray],
    device: str | torch.device = "auto",
    batch: int = 16384,
) -> list[np.ndarray]:
    """Per clip, ``x - x_hat`` of shape (T_i, D) in float32, in eval mode (BatchNorm running stats).

    Clips are grouped so that each forward pass sees about ``batch`` vectors, whatever their
    lengths (one pass per clip would be dominated by per-call overhead).
    """
    dev = resolve_device(device)
    module_on(model, dev)
    out: list[np.ndarray] = []
    group: list[np.ndarray] = []
    size = 0

    def flush() -> None:
        nonlocal group, size
        if not group:
            return
        xs = np.concatenate(group) if len(group) > 1 else group[0]
        xt = torch.from_numpy(np.ascontiguousarray(xs)).to(dev)
        res = torch.empty_like(xt)
        for s in range(0, len(xt), batch):
            recon, _ = model(xt[s : s + batch])
            res[s : s + batch] = xt[s : s + batch] - recon
        bounds = np.cumsum([len(g) for g in group])[:-1]
        out.extend(np.split(res.cpu().numpy(), bounds))
        group, size = [], 0

    for v in clip_vectors:
        group.append(np.asarray(v, dtype=np.float32).reshape(-1, model.input_dim))
        size += len(group[-1])
        if size >= batch:
            flush()
    flush()
    return out
