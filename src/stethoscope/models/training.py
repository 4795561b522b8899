"""One training loop for the trained front ends (dense AE, dual-branch CNN, ACAE).

A front end describes its training as a :class:`Task`: the modules to train (network and loss
heads), the batches of an epoch and the loss of one batch. The loop owns the rest, the same for
all: CPU threads, Adam, the learning-rate schedule, bf16 autocast on CUDA, gradient clipping,
progress, an epoch checkpoint in ``work_dir`` and resuming from it (:mod:`.checkpoint`).

Randomness without global state: each epoch's generators (host, device, numpy) and torch's global
generators, which dropout uses, are seeded from (seed, epoch), the global ones inside ``fork_rng``
so the caller's state is what it was afterwards. A run resumed after epoch k therefore draws the
numbers an uninterrupted run draws from epoch k + 1 on, and no random state is saved.

Under torchrun (:mod:`stethoscope.distributed`) the same loop trains data-parallel: every rank
draws the epoch's batches from the same host generator and takes its share of them (every
world-size-th batch, padded to equal counts as a DistributedSampler pads), the modules train inside
DistributedDataParallel (gradients averaged over the ranks at every step), augmentation and dropout
draw from per-rank generators, and the epoch's metrics are summed over the ranks once per epoch.
Rank 0 alone writes the checkpoint; on a restart it reads it and sends it to the others, so the
ranks need not share a disk. Tasks and their step functions stay as they are. A task may define
``load(batches)``: the batches' data, prepared ahead of the step (prefetching), in order.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from stethoscope import distributed
from stethoscope.devices import cpu_threads
from stethoscope.models import checkpoint
from stethoscope.progress import Progress

log = logging.getLogger(__name__)

#: settings of the loop that do not change the numbers it computes (left out of fingerprints)
_RUN_ONLY = ("name", "threads", "cudnn_benchmark", "progress_every")


@dataclass(frozen=True)
class LoopConfig:
    """How to train; ``name`` prefixes log lines and the progress stage ("<name>: epochs")."""

    name: str
    epochs: int
    seed: int
    lr: float
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" | "cosine" (per step, from lr down to 0)
    grad_clip: float | None = None  # max total gradient norm
    amp: bool = False  # bf16 autocast around the step, CUDA only
    threads: int | None = None  # torch threads on the CPU (None: devices.shared_threads())
    cudnn_benchmark: bool = False  # fixed input shapes: let cuDNN pick its kernels
    progress_every: float = 20.0  # seconds between mid-epoch progress reports
    max_steps: int | None = None  # at most this many steps per epoch (benchmarks, smoke runs)

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown learning-rate schedule {self.schedule!r}")


@dataclass
class EpochRandom:
    """The generators of one epoch, all seeded from (seed, epoch)."""

    host: torch.Generator
    device: torch.Generator
    numpy: np.random.Generator

    @classmethod
    def of(cls, seed: int, epoch: int, device: torch.device, rank: int = 0) -> EpochRandom:
        """``host`` is the same on every rank (it orders the epoch); ``device`` and ``numpy``,
        which augment, differ between ranks (rank 0 draws what a single process draws)."""
        own = (rank,) if rank else ()
        host = torch.Generator().manual_seed(derive_seed(seed, epoch, 0))
        dev = torch.Generator(device=device).manual_seed(derive_seed(seed, epoch, 1, *own))
        return cls(host, dev, np.random.default_rng([seed, epoch, 2, *own]))


class Task(Protocol):
    """A front end's training, as the loop sees it."""

    #: everything trained and checkpointed, by name; Adam takes their parameters in this order
    modules: dict[str, nn.Module]

    def batches(self, epoch: int, rand: EpochRandom) -> Sequence[Any]:
        """The batches of ``epoch`` (1-based), in order."""

    def step(
        self, batch: Any, rand: EpochRandom
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        """(loss to minimise, batch means of other metrics, samples in the batch)."""

    def epoch_metrics(self) -> dict[str, float]:
        """Figures measured after each epoch (validation loss, a head's scale...)."""


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence)."""
    state = np.random.SeedSequence([p & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2)
    return (int(state[0]) << 31) ^ int(state[1])


def digest(arrays: Iterable[np.ndarray]) -> str:
    """Fingerprint of training data: shapes, dtypes and bytes of every array."""
    h = hashlib.sha256()  # hardware-accelerated on current CPUs: 1.5 GB/s
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.reshape(-1).data.cast("B"))
    return h.hexdigest()[:32]


@contextlib.contextmanager
def global_seed(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """torch's global generators (CPU, and ``device``'s when CUDA) seeded inside the block and
    restored after it: for what can only draw from them (module initialisation)."""
    cuda = _cuda_indices(device)
    with torch.random.fork_rng(devices=cuda):
        _seed_global(seed, cuda)
        yield


def train(
    task: Task,
    cfg: LoopConfig,
    device: torch.device,
    *,
    fingerprint: dict[str, Any] | None = None,
    work_dir: str | Path | None = None,
    progress: Progress | None = None,
    parallel: bool = True,
) -> list[dict[str, Any]]:
    """Train ``task`` for ``cfg.epochs`` epochs; returns one metrics dict per epoch.

    With ``work_dir`` a checkpoint is written there after every epoch, and a checkpoint found there
    is resumed if it was made with the same ``fingerprint`` (data, front-end settings) and loop
    settings; else :class:`stethoscope.errors.ModelError`. The modules are left in eval mode.
    Under torchrun the ranks train it together unless ``parallel`` is False (each rank then trains
    a task of its own, and writes its own checkpoint).
    """
    work_dir = Path(work_dir) if work_dir is not None else None
    par = parallel and distributed.active()
    params = [p for m in task.modules.values() for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loop = {k: v for k, v in asdict(cfg).items() if k not in _RUN_ONLY}
    fingerprint = checkpoint.normalised({**(fingerprint or {}), "loop": loop})
    stage = f"{cfg.name}: epochs"
    start, history = 0, []
    if work_dir is not None:
        resumed = _resume(work_dir, task, opt, fingerprint, par)
        if resumed is not None:
            start, history = resumed.epoch, resumed.history[: resumed.epoch]
            if start < cfg.epochs:
                log.info(
                    "%s: resuming at epoch %d of %d from %s",
                    cfg.name,
                    start + 1,
                    cfg.epochs,
                    work_dir,
                )
            else:
                log.info("%s: already trained (%d epochs) in %s", cfg.name, start, work_dir)
            if progress is not None:
                progress(stage, start, cfg.epochs, {"resumed": start})
    writes = work_dir is not None and (distributed.is_main() or not par)
    cuda = _cuda_indices(device)
    ticker = _Ticker(progress, stage, cfg.epochs, cfg.progress_every)
    benchmark = torch.backends.cudnn.benchmark
    runner = _Runner(task, cfg, device, opt, params, ticker, par)
    with cpu_threads(cfg.threads, device), torch.random.fork_rng(devices=cuda):
        try:
            torch.backends.cudnn.benchmark = benchmark or (cfg.cudnn_benchmark and bool(cuda))
            for epoch in range(start + 1, cfg.epochs + 1):
                _seed_global(derive_seed(cfg.seed, epoch, 3, *runner.own), cuda)
                history.append(runner.epoch(epoch, first=epoch == start + 1))
                if writes:
                    assert work_dir is not None
                    checkpoint.save(work_dir, task.modules, opt, epoch, history, fingerprint)
                ticker.epoch_end()
                if progress is not None:
                    progress(stage, epoch, cfg.epochs, history[-1])
        finally:
            torch.backends.cudnn.benchmark = benchmark
    for module in task.modules.values():
        module.eval()
    return history


def _resume(
    work_dir: Path,
    task: Task,
    opt: torch.optim.Optimizer,
    fingerprint: dict[str, Any],
    par: bool,
) -> checkpoint.Resumed | None:
    """The checkpoint in ``work_dir`` restored; in a distributed training rank 0 reads it and
    every rank restores what it read (or raises the error it met)."""
    if not par:
        return checkpoint.load(work_dir, task.modules, opt, fingerprint)
    stored = distributed.from_main(lambda: checkpoint.read(work_dir, fingerprint))
    return None if stored is None else checkpoint.restore(stored, task.modules, opt)


class _Together(nn.Module):
    """All of a task's modules as one, so that DistributedDataParallel sees every parameter; its
    forward runs the task's step, whose graph then carries DDP's gradient hooks."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(modules)

    def forward(self, fn: Callable[[], Any]) -> Any:
        return fn()


class _Runner:
    """One epoch after another: the step, alone or through DistributedDataParallel."""

    def __init__(
        self,
        task: Task,
        cfg: LoopConfig,
        device: torch.device,
        opt: torch.optim.Optimizer,
        params: list[nn.Parameter],
        ticker: _Ticker,
        par: bool,
    ) -> None:
        self.task, self.cfg, self.device, self.opt, self.params = task, cfg, device, opt, params
        self.ticker, self.par = ticker, par
        self.rank = distributed.rank() if par else 0
        self.own = (self.rank,) if self.rank else ()
        self.ddp = (
            DistributedDataParallel(_Together(task.modules), device_ids=None) if par else None
        )

    def step(self, batch: Any, rand: EpochRandom) -> tuple[torch.Tensor, dict, int]:
        if self.ddp is None:
            return self.task.step(batch, rand)
        return self.ddp(lambda: self.task.step(batch, rand))

    def epoch(self, epoch: int, first: bool) -> dict[str, Any]:
        task, cfg, opt = self.task, self.cfg, self.opt
        t0 = time.perf_counter()
        rand = EpochRandom.of(cfg.seed, epoch, self.device, self.rank)
        for module in task.modules.values():
            module.train()
        batches: Sequence[Any] = task.batches(epoch, rand)
        if not batches:
            raise ValueError(f"{cfg.name}: an epoch has no batch to train on")
        if self.par:
            batches = distributed.shard(batches)
        if cfg.max_steps is not None:
            batches = batches[: max(1, cfg.max_steps)]
        if first and self.par:
            log.info(
                "%s: distributed: world size %d, %s clips per rank",
                cfg.name,
                distributed.world_size(),
                _count(batches),
            )
        load = getattr(task, "load", None)
        items: Iterable[Any] = load(batches) if load is not None else batches
        amp = cfg.amp and self.device.type == "cuda"
        names: list[str] = ["loss"]
        sums = torch.zeros(0)  # sample-weighted sums, on the device: no sync per step
        seen = 0
        for i, batch in enumerate(items):
            if cfg.schedule == "cosine":
                for group in opt.param_groups:
                    group["lr"] = _cosine(cfg.lr, (epoch - 1 + i / len(batches)) / cfg.epochs)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                loss, parts, n = self.step(batch, rand)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            opt.step()
            row = torch.stack(
                [loss.detach().float()] + [v.detach().float() for v in parts.values()]
            )
            sums = row * n if i == 0 else sums + row * n
            names = ["loss", *parts]
            seen += n
            self.ticker.step(epoch, i, len(batches), sums, seen)
        if self.par:  # the epoch's one collective besides the gradients: the metrics of all ranks
            total = distributed.all_sum(torch.cat([sums, sums.new_tensor([seen])]))
            sums, seen = total[:-1], int(total[-1].item())
        means = (sums / seen).tolist()  # the epoch's one host sync
        metrics: dict[str, Any] = {
            "epoch": epoch,
            **dict(zip(names, means, strict=True)),
            **task.epoch_metrics(),
        }
        secs = time.perf_counter() - t0
        metrics.update(
            lr=float(opt.param_groups[0]["lr"]), seconds=secs, samples_per_s=seen / max(secs, 1e-9)
        )
        return metrics


def _count(batches: Sequence[Any]) -> str:
    """Clips in ``batches`` when they are index tensors (what the tasks give), else '?'."""
    try:
        return str(sum(len(b) for b in batches))
    except TypeError:
        return "?"


def _cosine(lr: float, fraction: float) -> float:
    return 0.5 * lr * (1.0 + math.cos(math.pi * fraction))


def _cuda_indices(device: torch.device | None) -> list[int]:
    if device is None or device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _seed_global(seed: int, cuda: list[int]) -> None:
    torch.default_generator.manual_seed(seed)
    for i in cuda:
        torch.cuda.default_generators[i].manual_seed(seed)


class _Ticker:
    """Mid-epoch progress (a CNN epoch on a CPU takes minutes): fractional ``done`` at most every
    ``every`` seconds, never at an epoch's last step (the epoch's own report follows)."""

    def __init__(self, progress: Progress | None, stage: str, epochs: int, every: float) -> None:
        self.progress, self.stage, self.epochs, self.every = progress, stage, epochs, every
        self.last = time.monotonic()

    def step(self, epoch: int, i: int, n: int, sums: torch.Tensor, seen: int) -> None:
        """After step ``i`` of ``n`` of ``epoch``; ``sums[0] / seen`` is the running loss."""
        if self.progress is None or i + 1 >= n:
            return
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        done = round(epoch - 1 + (i + 1) / n, 2)
        self.progress(
            self.stage, done, self.epochs, {"epoch": epoch, "loss": float(sums[0]) / seen}
        )

    def epoch_end(self) -> None:
        self.last = time.monotonic()
