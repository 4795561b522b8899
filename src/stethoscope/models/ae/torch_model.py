"""The official DCASE Task 2 baseline network: a dense autoencoder on stacked log-mel frames.

Architecture (SPEC 4.1, Harada et al. EUSIPCO 2023): ``D -> 128 -> 128 -> 128 -> 128 -> 8 -> 128 ->
128 -> 128 -> 128 -> D`` with ``D = n_mels * n_frames`` (640 by default). Every layer except the
output is Linear + BatchNorm1d + ReLU, the 8-dim bottleneck included. BatchNorm uses momentum 0.01
and eps 1e-3 like the official code (inherited from its Keras ancestor); these matter for how fast
the running statistics used at test time follow training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

BN_MOMENTUM = 0.01
BN_EPS = 1e-3


def _block(n_in: int, n_out: int) -> list[nn.Module]:
    return [
        nn.Linear(n_in, n_out),
        nn.BatchNorm1d(n_out, momentum=BN_MOMENTUM, eps=BN_EPS),
        nn.ReLU(),
    ]


class DenseAE(nn.Module):
    """Frame-vector autoencoder; ``forward`` returns (reconstruction, bottleneck code)."""

    def __init__(
        self, input_dim: int = 640, hidden_dim: int = 128, latent_dim: int = 8, n_hidden: int = 4
    ) -> None:
        super().__init__()
        if min(input_dim, hidden_dim, latent_dim, n_hidden) < 1:
            raise ValueError("DenseAE dimensions and layer count must be positive")
        self.input_dim = input_dim
        self.hidden_dim = hidden_dim
        self.latent_dim = latent_dim
        self.n_hidden = n_hidden

        enc: list[nn.Module] = []
        dims = [input_dim] + [hidden_dim] * n_hidden + [latent_dim]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            enc += _block(a, b)
        dec: list[nn.Module] = []
        dims = [latent_dim] + [hidden_dim] * n_hidden
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            dec += _block(a, b)
        dec.append(nn.Linear(hidden_dim, input_dim))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x.reshape(-1, self.input_dim))
        return self.decoder(z), z

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments, saved next to the weights."""
        return {
            "input_dim": self.input_dim,
            "hidden_dim": self.hidden_dim,
            "latent_dim": self.latent_dim,
            "n_hidden": self.n_hidden,
        }
