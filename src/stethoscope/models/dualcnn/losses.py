"""Training objective of the dual-branch CNN: sub-cluster AdaCos, mixup and feature exchange.

Sub-cluster AdaCos (Wilkinghoff, IJCNN 2021) is a cosine-softmax classifier with K centres
("sub-clusters") per class; a class's probability is the sum of its sub-clusters' softmax
probabilities, so a class may occupy several regions of the sphere. The scale s is not learned but
set adaptively (AdaCos, Zhang et al. 2019) before every training step:

    s <- log(B_avg) / cos(min(pi/4, theta_med))

with B_avg the batch mean of sum_{non-target j} exp(s * cos theta_ij) and theta_med the batch median
of the angle between an embedding and its own class (label-weighted over mixed-up classes, nearest
sub-cluster of each class). Initial s = sqrt(2) * log(C*K - 1).

Centres: the main head keeps its centres *fixed* at their random initialisation (the network must
move the embeddings; fixed centres keep the embedding space from collapsing onto few directions, as
in Wilkinghoff's DCASE2023/ICASSP2024 systems), while the feature-exchange head learns them
(``learnable_centres``), again following those systems.

Mixup mixes waveforms and (one-hot) labels with lambda ~ U(0, 1) on a random half of the batch.
Feature exchange (FeatEx, Wilkinghoff ICASSP 2024) builds, for a random half of the batch,
embeddings whose spectrogram part comes from one clip and spectrum part from another; they belong to
new classes, so the FeatEx head has 3C classes: block 0 = unexchanged samples (their own classes),
block 1 = class of the spectrogram's clip, block 2 = class of the spectrum's clip (0.5 each). Both
losses act on the 256-dim concatenated embedding, as in the papers; total loss = main + FeatEx.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SubClusterAdaCos(nn.Module):
    """Cosine classifier with ``n_subclusters`` centres per class and an adaptive scale."""

    centres: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        emb_dim: int,
        n_classes: int,
        n_subclusters: int = 16,
        learnable_centres: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.n_classes, self.n_subclusters = int(n_classes), int(n_subclusters)
        n_centres = self.n_classes * self.n_subclusters
        w = torch.empty(n_centres, emb_dim)
        if w.device.type != "meta":  # loading builds on the meta device, then fills from the file
            gen = torch.Generator().manual_seed(seed)
            bound = math.sqrt(6.0 / (emb_dim + n_centres))  # Glorot uniform, as in the reference
            w.copy_((torch.rand(n_centres, emb_dim, generator=gen) * 2 - 1) * bound)
        if learnable_centres:
            self.centres = nn.Parameter(w)
        else:
            self.register_buffer("centres", w)
        s0 = math.sqrt(2.0) * math.log(max(n_centres - 1, 2))
        self.register_buffer("scale", torch.tensor(s0, dtype=torch.float32))

    def cosines(self, emb: torch.Tensor) -> torch.Tensor:
        """Cosine of each embedding to each centre: (B, C, K)."""
        e = nn.functional.normalize(emb.float(), dim=1)
        w = nn.functional.normalize(self.centres, dim=1)
        return (e @ w.t()).view(-1, self.n_classes, self.n_subclusters)

    def best_subcluster_logits(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, C) scale x cosine to each class's nearest sub-cluster (DensitySoftmax's logits)."""
        return self.scale * self.cosines(emb).amax(dim=2)

    def class_logits(self, emb: torch.Tensor) -> torch.Tensor:
        """Class logits (B, C) = log sum_k exp(s cos); their softmax is the class posterior."""
        return torch.logsumexp(self.scale * self.cosines(emb), dim=2)

    @torch.no_grad()
    def _update_scale(self, cos: torch.Tensor, target: torch.Tensor) -> None:
        """AdaCos step over non-target sub-clusters; ``target`` (B, C) holds soft labels."""
        # all targets (one class) give -inf: no update
        is_target = (target > 0)[:, :, None].expand_as(cos)
        s_cos = (self.scale * cos).masked_fill(is_target, float("-inf")).flatten(1)
        log_b = torch.logsumexp(s_cos, dim=1)  # log sum over non-target sub-clusters, per sample
        log_b_avg = torch.logsumexp(log_b, dim=0) - math.log(cos.shape[0])
        # the angle to each class's nearest sub-cluster
        theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7)).amin(dim=2)
        theta_i = (target * theta).sum(1) / target.sum(1).clamp_min(1e-12)
        theta_med = torch.quantile(theta_i, 0.5)
        new = log_b_avg / torch.cos(theta_med.clamp(max=math.pi / 4))
        self.scale.copy_(torch.where(torch.isfinite(new) & (new > 0), new, self.scale))

    def forward(self, emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Soft-label cross-entropy of the summed sub-cluster probabilities (batch mean)."""
        cos = self.cosines(emb)
        target = target.float()
        if self.training:
            self._update_scale(cos.detach(), target)
        logits = self.scale * cos
        log_p = torch.logsumexp(logits, dim=2) - torch.logsumexp(
            logits.flatten(1), dim=1, keepdim=True
        )
        return -(target * log_p).sum(1).mean()


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Float one-hot rows; scatter-based so it never reads values back to the host (no GPU sync)."""
    out = torch.zeros(labels.shape[0], n_classes, device=labels.device)
    return out.scatter_(1, labels.long().view(-1, 1), 1.0)


def mixup(
    wave: torch.Tensor,
    real_len: torch.Tensor,
    target: torch.Tensor,
    p: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix a random fraction ``p`` of the batch with random partners (waveforms, soft labels)."""
    b, dev = wave.shape[0], wave.device
    if p <= 0 or b < 2:
        return wave, real_len, target
    partner = torch.randperm(b, generator=generator, device=dev)
    lam = torch.rand(b, generator=generator, device=dev)
    apply = torch.rand(b, generator=generator, device=dev) < p
    lam = torch.where(apply, lam, torch.ones_like(lam))
    wave = lam[:, None].to(wave.dtype) * wave + (1 - lam[:, None]).to(wave.dtype) * wave[partner]
    target = lam[:, None] * target + (1 - lam[:, None]) * target[partner]
    real_len = torch.where(apply, torch.maximum(real_len, real_len[partner]), real_len)
    return wave, real_len, target


def feature_exchange(
    emb_spec: torch.Tensor,
    emb_spectrum: torch.Tensor,
    target: torch.Tensor,
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FeatEx: (B, 2D) embeddings, (B, 3C) labels; a fraction ``p`` with swapped spectrum parts."""
    b, dev = emb_spec.shape[0], emb_spec.device
    if b < 2:
        p = 0.0
    shift = torch.randint(1, max(b, 2), (1,), generator=generator, device=dev)  # no host sync
    partner = (torch.arange(b, device=dev) + shift) % b  # never the sample itself
    ex = torch.rand(b, generator=generator, device=dev) < p
    spectrum = torch.where(ex[:, None], emb_spectrum[partner], emb_spectrum)
    exf = ex[:, None].to(target.dtype)
    labels = torch.cat([(1 - exf) * target, 0.5 * exf * target, 0.5 * exf * target[partner]], dim=1)
    return torch.cat([emb_spec, spectrum], dim=1), labels
