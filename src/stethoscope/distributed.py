"""Several training processes started by ``torchrun``: the process group, ranks and barriers.

torchrun starts one process per device and tells each who it is in the environment (WORLD_SIZE,
RANK, LOCAL_RANK, and where to meet: MASTER_ADDR/MASTER_PORT or a rendezvous endpoint).
:func:`session` joins the group once per command, NCCL where CUDA is present and gloo on the CPU.
Outside torchrun (or with one process) nothing is initialised and every helper here acts for a
group of one, so the single-process code runs as it always did.

The rules the rest of the package follows: every rank trains (data-parallel, see
:mod:`stethoscope.models.training`); rank 0 alone writes (models, checkpoints, run folders,
reports) and decides what a run still has to do (:func:`from_main`), so that all ranks take the
same steps and meet at the same collectives; features are computed first by one process per node
(:func:`local_first`), the others then read them from the cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: seconds a rank waits at a collective (rank 0 may score and report for a long while between two
#: trainings of a study, the other ranks waiting for the next one): $STETHOSCOPE_DIST_TIMEOUT
DEFAULT_TIMEOUT_S = 6 * 3600


def launched() -> bool:
    """Whether this process is one of several started by torchrun (WORLD_SIZE > 1)."""
    return _env_int("WORLD_SIZE", 1) > 1


def active() -> bool:
    """Whether a process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def local_rank() -> int:
    """This process's index on its node (its GPU), 0 outside torchrun."""
    return _env_int("LOCAL_RANK", 0) if active() else 0


def is_main() -> bool:
    """Rank 0, the one process that writes."""
    return rank() == 0


def local_device() -> torch.device:
    """The CUDA device of this rank (cuda:LOCAL_RANK) under torchrun; plain ``cuda`` otherwise."""
    return torch.device("cuda", local_rank()) if active() else torch.device("cuda")


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[None]:
    """Join torchrun's process group for the block (once; nested calls do nothing), then leave it:
    NCCL when ``device`` is a GPU (auto: CUDA when present), gloo on the CPU.

    Ranks other than 0 log warnings only, so the output is rank 0's. Without torchrun: nothing.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield
        return
    cuda = torch.cuda.is_available() and not str(device).startswith("cpu")
    local = _env_int("LOCAL_RANK", 0)
    if cuda:
        torch.cuda.set_device(local)
    timeout = timedelta(seconds=_env_int("STETHOSCOPE_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        timeout=timeout,
        device_id=torch.device("cuda", local) if cuda else None,
    )
    quiet = logging.getLogger("stethoscope")
    level = quiet.level
    if dist.get_rank() != 0:
        quiet.setLevel(logging.WARNING)
    try:
        yield
    finally:
        quiet.setLevel(level)
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here."""
    if active():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[local_rank()])
        else:
            dist.barrier()


@contextlib.contextmanager
def local_first() -> Iterator[None]:
    """The block runs on the first process of each node, then on the others (a cache fill: one
    process computes, the others find it done)."""
    first = _env_int("LOCAL_RANK", 0) == 0
    if not first:
        barrier()
    yield
    if first:
        barrier()


def from_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 and its result (or the error it raised) given to every rank."""
    if not active():
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except Exception as exc:  # every rank raises it, not only rank 0
            box[0] = ("error", exc)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def all_gather(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order (CPU objects: they are pickled)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over the ranks (in place, and returned)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every world_size-th from its rank on, after padding the
    list with its first items to a multiple of the world size (as DistributedSampler does), so
    that every rank gets as many and none waits for another at the end."""
    n, w = len(items), world_size()
    if w == 1 or n == 0:
        return list(items)
    padded = [items[i % n] for i in range(-(-n // w) * w)]
    return padded[rank() :: w]


def spread(keys: Sequence[str], fn: Callable[[str], R]) -> dict[str, R]:
    """``fn(key)`` for every key, the keys dealt out over the ranks (key i to rank i mod world);
    every rank gets all results. Results travel pickled: give CPU objects."""
    mine = {k: fn(k) for k in keys[rank() :: world_size()]}
    merged: dict[str, R] = {}
    for part in all_gather(mine):
        merged.update(part)
    return {k: merged[k] for k in keys}


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default
