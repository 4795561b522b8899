"""Embeddings and reconstruction errors of a trained ACAE (eval mode).

The cosine-to-centre score and the minimum-covering-volume threshold are back ends; this module
only produces their inputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from stethoscope.devices import module_on, resolve_device
from stethoscope.dsp.windows import clip_windows, per_clip_mean
from stethoscope.models.acae.inputs import acae_features, stack_waves
from stethoscope.models.acae.torch_model import ACAE


@torch.no_grad()
def _batches(
    model: ACAE,
    waves: Sequence[np.ndarray],
    device: torch.device | str | None,
    batch_size: int,
    offset: int = 0,
) -> Iterator[torch.Tensor]:
    """Standardised feature batches of ``waves`` on the model's device."""
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    module_on(model, dev)
    spec = model.cfg.feature_spec()
    for i in range(0, len(waves), batch_size):
        x = stack_waves(waves[i : i + batch_size], spec.input_samples, offset).to(dev)
        yield model.normalize(acae_features(x, spec))


def _windows(model: ACAE, waves: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Clips longer than the model input cut into evenly spaced windows (each read on from its
    start, then cropped or tiled to the input); the owner of each."""
    return clip_windows(waves, model.cfg.input_samples)


@torch.no_grad()
def embed(
    model: ACAE,
    waves: Sequence[np.ndarray],
    device: torch.device | str | None = None,
    batch_size: int = 64,
    offset: int = 0,
) -> np.ndarray:
    """(N, latent_dim) embeddings z (not length-normalised; back ends normalise).

    ``offset`` (samples) is where each clip's tiled/cropped input window starts: several offsets
    give several views of one clip.
    """
    windows, owner = _windows(model, waves) if offset == 0 else (list(waves), np.arange(len(waves)))
    out = [
        model.encode(x)[1].float().cpu()
        for x in _batches(model, windows, device, batch_size, offset)
    ]
    if not out:
        return np.zeros((0, model.cfg.latent_dim), dtype=np.float32)
    return per_clip_mean(torch.cat(out).numpy(), owner, len(waves))


@torch.no_grad()
def reconstruction_error(
    model: ACAE,
    waves: Sequence[np.ndarray],
    device: torch.device | str | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """(N,) mean squared reconstruction error of each clip's standardised features (ablation)."""
    windows, owner = _windows(model, waves)
    out = []
    for x in _batches(model, windows, device, batch_size):
        recon, _ = model(x)
        out.append(((recon - x) ** 2).mean(dim=(1, 2)).float().cpu())
    if not out:
        return np.zeros(0, dtype=np.float32)
    return per_clip_mean(torch.cat(out).numpy()[:, None], owner, len(waves))[:, 0]
