"""One rule for picking the torch device, shared by every trainer and the pipeline; and one way to
run with another torch thread count for a while."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from stethoscope import distributed
from stethoscope.errors import ConfigError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto'/None -> CUDA when available, else CPU; an explicit CUDA device must exist. Under
    torchrun, 'auto' and 'cuda' mean this rank's own GPU (cuda:LOCAL_RANK)."""
    if isinstance(device, torch.device):
        return device
    if device is None or str(device) == "auto":
        return distributed.local_device() if torch.cuda.is_available() else torch.device("cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but CUDA is not available")
    if str(device) == "cuda":
        return distributed.local_device()
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown torch device '{device}'") from exc


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` (at least 1) inside the block, then restored;
    ``None`` leaves it as it is."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_threads(n: int | None, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """:func:`torch_threads` with ``n`` threads (None: :func:`shared_threads`) for work on the CPU;
    on an accelerator the host's threads stay as set (they only feed the device there)."""
    if device.type != "cpu":
        return torch_threads(None)
    return torch_threads(n if n is not None else shared_threads())


def shared_threads() -> int:
    """Half the cores this process may run on (at least 1): the default torch thread count of the
    trained front ends on the CPU. Two trainings at once, or one beside other work, then do not
    run more threads than there are cores; when they do, OpenMP threads wait on each other at
    every operation (measured in benchmarks/README.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 2) // 2)


def module_on(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` on ``device`` in eval mode, moved only if it is elsewhere: ``.to()`` walks every
    submodule even when nothing moves, which is a good share of scoring one short clip."""
    first = next(module.parameters(), None)
    if first is not None and first.device != device:
        module.to(device)
    if module.training:
        module.eval()
    return module
