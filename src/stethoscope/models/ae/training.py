"""Training the baseline autoencoder of one machine type (SPEC 4.1), through the shared loop.

The official recipe: all frame vectors of the machine's training clips are pooled; a random 10 %
*of the vectors* (as the official code's ``train_test_split`` over the vector dataset) is held out
for the validation loss; Adam (lr 1e-3), MSE, batch 256, 100 epochs, reshuffled every epoch;
a batch of a single vector is skipped because BatchNorm cannot train on it.

The vectors live in one float32 tensor on the training device and a batch is an index slice of
the epoch's permutation (no DataLoader). The weights come from seed ``seed`` and the permutation
of epoch e from numpy's ``default_rng([seed, e])``: the pinned results of the slider set depend
on both, and a resumed run sees the same batches as an uninterrupted one.

Threads: one by default on the CPU. The layers are 128 wide, so a step is a few hundred
microseconds of work that extra threads barely speed up, while threads of two processes sharing
the cores wait on each other at every operation (benchmarks/README.md). BatchNorm's batch sums
depend on the thread count, so the weights (not the method) change with ``threads``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from stethoscope import distributed
from stethoscope.devices import cpu_threads, resolve_device
from stethoscope.models.ae.torch_model import DenseAE
from stethoscope.models.training import EpochRandom, LoopConfig, digest, global_seed, train
from stethoscope.progress import Progress

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class AEConfig:
    """Hyper-parameters of the baseline AE (defaults: the official 2023-2025 baseline.yaml)."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    val_split: float = 0.1
    seed: int = 0
    hidden_dim: int = 128
    latent_dim: int = 8
    n_hidden: int = 4
    threads: int | None = 1  # torch threads on the CPU, training and scoring (None: half the cores)
    eval_batch: int = 16384  # vectors per forward pass when scoring

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_split < 1.0:
            raise ValueError("val_split must be in [0, 1)")
        if min(self.epochs + 1, self.batch_size, self.eval_batch) < 1:
            raise ValueError("epochs must be >= 0, batch sizes >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The settings a checkpoint must share to be resumed (not threads or scoring batch)."""
        return {k: v for k, v in asdict(self).items() if k not in ("threads", "eval_batch")}


def spread_machines(machines: Sequence[str], train_one: Callable[[str], T]) -> dict[str, T]:
    """``train_one(machine)`` for every machine type; under torchrun the types are dealt out over
    the ranks (each trains its own, alone: one small model gains nothing from several GPUs) and
    every rank gets all results, which must therefore be CPU objects."""
    if distributed.active():
        w = distributed.world_size()
        log.info(
            "ae: distributed: world size %d, %s",
            w,
            "; ".join(f"rank {r}: {', '.join(machines[r::w]) or '-'}" for r in range(w)),
        )
    return distributed.spread(list(machines), train_one)


def split(n: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random vector-level train/validation split (ceil, like sklearn's train_test_split)."""
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_val = math.ceil(val_split * n) if val_split > 0 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class _AETask:
    def __init__(
        self,
        model: DenseAE,
        x: torch.Tensor,
        train_idx: torch.Tensor,
        val_idx: torch.Tensor,
        cfg: AEConfig,
    ) -> None:
        self.modules: dict[str, torch.nn.Module] = {"model": model}
        self.model, self.x, self.cfg = model, x, cfg
        self.train_idx, self.val_idx = train_idx, val_idx

    def batches(self, epoch: int, rand: EpochRandom) -> list[torch.Tensor]:
        n, b = self.train_idx.numel(), self.cfg.batch_size
        perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(n)
        order = self.train_idx[torch.from_numpy(perm).to(self.x.device)]
        return [order[s : s + b] for s in range(0, n, b) if min(b, n - s) >= 2]

    def step(
        self, idx: torch.Tensor, rand: EpochRandom
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        xb = self.x[idx]
        recon, _ = self.model(xb)
        return F.mse_loss(recon, xb), {}, idx.numel()

    @torch.no_grad()
    def epoch_metrics(self) -> dict[str, float]:
        if not self.val_idx.numel():
            return {}
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.x.device)
        for s in range(0, self.val_idx.numel(), self.cfg.eval_batch):
            xb = self.x[self.val_idx[s : s + self.cfg.eval_batch]]
            total += ((self.model(xb)[0] - xb) ** 2).mean(dim=1).sum().double()
        return {"val_loss": float(total) / self.val_idx.numel()}


def train_ae(
    clip_vectors: Sequence[np.ndarray],
    cfg: AEConfig | None = None,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    work_dir: str | Path | None = None,
    name: str = "ae",
) -> tuple[DenseAE, list[dict]]:
    """Train one AE on the pooled frame vectors of ``clip_vectors`` (one (T_i, D) array per clip).

    Returns the model (eval mode, on the training device) and one metrics dict per epoch
    (``epoch``, ``loss``, ``val_loss`` with a validation split, ``seconds``...). ``work_dir``
    holds the epoch checkpoint; training resumes from it (see :func:`models.training.train`).
    """
    cfg = cfg or AEConfig()
    dev = resolve_device(device)
    if len(clip_vectors) == 0:
        raise ValueError("no training clips")
    data = np.concatenate(
        [np.asarray(v, dtype=np.float32).reshape(-1, np.shape(v)[-1]) for v in clip_vectors]
    )
    n, dim = data.shape
    train_np, val_np = split(n, cfg.val_split, cfg.seed)
    if len(train_np) < 2:
        raise ValueError(f"need at least 2 training vectors, got {len(train_np)}")
    fingerprint = {"ae": cfg.fingerprint(), "data": digest([data])}
    with cpu_threads(cfg.threads, dev):
        x = torch.from_numpy(data).to(dev)
        del data
        with global_seed(cfg.seed):
            model = DenseAE(dim, cfg.hidden_dim, cfg.latent_dim, cfg.n_hidden)
        model.to(dev)
        task = _AETask(
            model, x, torch.from_numpy(train_np).to(dev), torch.from_numpy(val_np).to(dev), cfg
        )
        loop = LoopConfig(
            name=name, epochs=cfg.epochs, seed=cfg.seed, lr=cfg.lr, threads=cfg.threads
        )
        history = train(
            task,
            loop,
            dev,
            fingerprint=fingerprint,
            work_dir=work_dir,
            progress=progress,
            parallel=False,  # one small model per machine type: under torchrun, one rank each
        )
    return model, history
