"""ACAE training losses: ArcFace head, noisy-ArcMix (Choi & Choi, ICASSP 2024), MSE + noisy-ArcMix.

Reading of noisy-ArcMix used here. Mixup mixes two inputs, x = lam*x_a + (1-lam)*x_b with
lam ~ Beta(alpha, alpha), and the ArcFace margin is defined for a single target class. ArcMix (the
authors' earlier variant) builds two logit matrices, one with the margin on y_a's column and one
with the margin on y_b's column, and uses each for its own cross-entropy term. Noisy-ArcMix builds
ONE logit matrix with the angular margin added only to the y_a column and uses that same matrix for
both terms:

    logits = s * [cos(theta_j + m) if j == y_a else cos(theta_j)]_j
    L = lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)

So the y_b term sees its own class without a margin while a margin sits on another class (y_a); the
authors describe this as a "correct or incorrect" margin on the target angle that acts like label
noise, regularising against over-confident, over-fitted normal classes. When y_b == y_a (mixing two
clips of one class) both terms see the margin; when lam == 1 the loss is plain ArcFace
cross-entropy.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ArcFaceHead(nn.Module):
    """Cosine classifier over length-normalised embeddings, with an optional additive margin."""

    def __init__(self, embed_dim: int, n_classes: int, s: float = 30.0, m: float = 0.7) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError("ArcFaceHead needs at least one class")
        if not 0.0 <= m < math.pi:
            raise ValueError(f"margin must be in [0, pi), got {m}")
        self.embed_dim, self.n_classes, self.s, self.m = embed_dim, n_classes, float(s), float(m)
        self.weight = nn.Parameter(torch.empty(n_classes, embed_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings -> (B, n_classes) cosine similarity to each class centre."""
        return F.linear(F.normalize(z, dim=1), F.normalize(self.weight, dim=1))

    def margin_cosine(self, cos: torch.Tensor) -> torch.Tensor:
        """cos(theta + m), continued past theta = pi - m by cos(theta) - (1 - cos m).

        The continuation keeps the target logit continuous and decreasing in theta over [0, pi], so
        a sample far from its class still gets a gradient towards it (cos(theta + m) would turn
        back up).
        """
        cos = cos.clamp(-1.0, 1.0)
        sin = (1.0 - cos * cos).clamp_min(1e-9).sqrt()
        phi = cos * math.cos(self.m) - sin * math.sin(self.m)
        beyond = cos < math.cos(math.pi - self.m)  # theta > pi - m
        return torch.where(beyond, cos - (1.0 - math.cos(self.m)), phi)

    def forward(self, z: torch.Tensor, margin_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled logits s*cos(theta); with ``margin_labels``, the margin on those columns only."""
        cos = self.cosine(z)
        if margin_labels is not None and self.m > 0:
            onehot = F.one_hot(margin_labels.long(), self.n_classes).bool()
            cos = torch.where(onehot, self.margin_cosine(cos), cos)
        return self.s * cos


def arcface_loss(head: ArcFaceHead, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Plain ArcFace cross-entropy (no mixup)."""
    return F.cross_entropy(head(z, y), y)


def noisy_arcmix_loss(
    head: ArcFaceHead,
    z_mixed: torch.Tensor,
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam: float | torch.Tensor,
) -> torch.Tensor:
    """lam*CE(L, y_a) + (1-lam)*CE(L, y_b) with one logit matrix L whose margin sits only on y_a."""
    logits = head(z_mixed, y_a)
    return lam * F.cross_entropy(logits, y_a) + (1.0 - lam) * F.cross_entropy(logits, y_b)


def acae_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    z: torch.Tensor,
    head: ArcFaceHead | None,
    y_a: torch.Tensor | None,
    y_b: torch.Tensor | None,
    lam: float,
    recon_weight: float = 1.0,
    arc_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total = recon_weight*MSE(recon, target) + arc_weight*noisy-ArcMix; head None gives MSE only.

    Returns the loss and its parts (detached tensors: logging them needs no host sync per step).
    """
    mse = F.mse_loss(recon, target)
    total = recon_weight * mse
    parts = {"recon": mse.detach()}
    if head is not None and y_a is not None and y_b is not None:
        arc = noisy_arcmix_loss(head, z, y_a, y_b, lam)
        total = total + arc_weight * arc
        parts["arc"] = arc.detach()
    return total, parts
