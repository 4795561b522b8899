"""One rule for picking the torch device, shared by every trainer and the pipeline; and one way
to run with another torch thread count for a while."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def torch_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto'/None -> CUDA when available, else CPU; an explicit CUDA device must exist."""
    if isinstance(device, torch.device):
        return device
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' requested but CUDA is not available")
    return torch.device(device)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` (at least 1) inside the block, then restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
