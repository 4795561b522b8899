"""ACAE network: conv encoder, self-attention over time, embedding head, transposed-conv decoder.

Data flow for a standardised feature map x of shape (B, F, T):

1. Encoder: ``len(channels)`` blocks of Conv2d(3x3) + BatchNorm + ReLU + MaxPool(2) over (freq,
   time); the input is first replicate-padded to a multiple of 2**blocks on both axes so the decoder
   can undo the pooling exactly and its output is simply cropped back to (F, T).
2. The remaining frequency axis is folded into the channels and projected to ``d_model``: one token
   per (pooled) time step. Convolutions see only local context; the multi-head self-attention block
   that follows (MHA + residual + LayerNorm, then a feed-forward + residual + LayerNorm) gives every
   token the whole clip, the report's "global dependency modelling". No positional encoding: machine
   sounds are largely stationary and the embedding should not depend on where in the clip a pattern
   falls. ``attention=False`` removes this block (ablation).
3. Latent sequence (B, T', d_model) -> [mean over time, max over time] -> Linear -> z
   (``latent_dim``), the embedding the ArcFace head and the cosine back end see.
4. Decoder: per-token Linear back to (C, F') then ConvTranspose2d blocks (kernel 4, stride 2, which
   doubles the size exactly) and a final 3x3 conv to one channel, cropped to (F, T).

Per-frequency-bin standardisation statistics of the training features live in buffers, so they are
saved and loaded with the weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from stethoscope.models.acae.inputs import FeatureSpec

if TYPE_CHECKING:  # the config lives in training.py, which imports this module
    from stethoscope.models.acae.training import ACAEConfig


class ConvBlock(nn.Sequential):
    """Conv2d 3x3 + BN + ReLU + 2x2 max-pool: halves both axes."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )


class UpBlock(nn.Sequential):
    """ConvTranspose2d (kernel 4, stride 2, padding 1) + BN + ReLU: doubles both axes exactly."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class TemporalAttention(nn.Module):
    """A transformer-encoder layer over time tokens (post-norm): the whole clip for every frame."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, 2 * d_model),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(2 * d_model, d_model),
        )
        self.norm2 = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.mha(x, x, x, need_weights=False)
        x = self.norm1(x + self.drop(a))
        return self.norm2(x + self.drop(self.ff(x)))


class ACAE(nn.Module):
    """Attention and convolution enhanced autoencoder (the report's system 3)."""

    feat_mean: torch.Tensor
    feat_std: torch.Tensor

    def __init__(self, cfg: ACAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        spec: FeatureSpec = cfg.feature_spec()
        self.n_freq, self.n_frames = spec.shape()
        channels = list(cfg.channels)
        if not channels:
            raise ValueError("channels must name at least one encoder block")
        self.factor = 2 ** len(channels)
        self.f_pad = -(-self.n_freq // self.factor) * self.factor
        self.t_pad = -(-self.n_frames // self.factor) * self.factor
        f_lat = self.f_pad // self.factor
        self.c_lat, self.f_lat = channels[-1], f_lat

        self.encoder = nn.Sequential(
            *[ConvBlock(ci, co) for ci, co in zip([1] + channels[:-1], channels, strict=True)]
        )
        self.to_tokens = nn.Linear(channels[-1] * f_lat, cfg.d_model)
        self.attention = (
            TemporalAttention(cfg.d_model, cfg.heads, cfg.dropout) if cfg.attention else None
        )
        self.embedding = nn.Linear(2 * cfg.d_model, cfg.latent_dim, bias=False)

        self.from_tokens = nn.Linear(cfg.d_model, channels[-1] * f_lat)
        dec = list(reversed(channels[:-1])) + [channels[0]]
        self.decoder = nn.Sequential(
            *[UpBlock(ci, co) for ci, co in zip([channels[-1]] + dec[:-1], dec, strict=True)]
        )
        self.out = nn.Conv2d(dec[-1], 1, 3, padding=1)

        self.register_buffer("feat_mean", torch.zeros(self.n_freq))
        self.register_buffer("feat_std", torch.ones(self.n_freq))

    # -- standardisation -------------------------------------------------------------------------
    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-frequency-bin statistics of the training features."""
        self.feat_mean.copy_(mean.to(self.feat_mean))
        self.feat_std.copy_(std.to(self.feat_std).clamp_min(1e-3))

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, F, T) raw features -> standardised network input."""
        return (feats - self.feat_mean[:, None]) / self.feat_std[:, None]

    # -- network ---------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised (B, F, T) -> (latent sequence (B, T', d_model), embedding z (B, latent))."""
        if x.shape[1:] != (self.n_freq, self.n_frames):
            raise ValueError(
                f"expected input (B, {self.n_freq}, {self.n_frames}), got {tuple(x.shape)}"
            )
        h = F.pad(
            x[:, None],
            (0, self.t_pad - self.n_frames, 0, self.f_pad - self.n_freq),
            mode="replicate",
        )
        h = self.encoder(h)  # (B, C, F', T')
        b, c, f, t = h.shape
        seq = self.to_tokens(h.permute(0, 3, 1, 2).reshape(b, t, c * f))
        if self.attention is not None:
            seq = self.attention(seq)
        z = self.embedding(torch.cat([seq.mean(dim=1), seq.amax(dim=1)], dim=1))
        return seq, z

    def decode(self, seq: torch.Tensor) -> torch.Tensor:
        """Latent sequence (B, T', d_model) -> reconstruction (B, F, T)."""
        b, t, _ = seq.shape
        h = self.from_tokens(seq).reshape(b, t, self.c_lat, self.f_lat).permute(0, 2, 3, 1)
        h = self.out(self.decoder(h))[:, 0]
        return h[:, : self.n_freq, : self.n_frames]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised (B, F, T) -> (reconstruction (B, F, T), embedding z (B, latent_dim))."""
        seq, z = self.encode(x)
        return self.decode(seq), z
