"""One rule for picking the torch device, shared by every trainer and the pipeline."""

from __future__ import annotations

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
