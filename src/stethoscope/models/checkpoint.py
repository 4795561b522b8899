"""Epoch checkpoints of the training loop: everything a resumed run needs to continue exactly.

A checkpoint holds the weights and buffers of every trained module (network and loss heads), the
optimizer state, the number of completed epochs, the history so far and a fingerprint of the data
and settings it was made with. No random state is stored: the loop derives each epoch's generators
from (seed, epoch) and the learning rate from the epoch, so those follow from ``epoch`` alone.

Layout in the checkpoint folder: ``checkpoint-NNNN.safetensors`` (tensors of epoch NNNN) and
``checkpoint.json`` naming it. The weights are written first, each file atomically; the JSON is the
commit point, and older weights files are removed after it. A kill at any moment leaves either the
previous checkpoint or the new one, never weights of one epoch with the metadata of another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from stethoscope.errors import ModelError
from stethoscope.state_io import atomic_write_with, read_json, write_json

META = "checkpoint.json"
FORMAT = "stethoscope.checkpoint"
VERSION = 1


@dataclass
class Resumed:
    """What a checkpoint restored besides the tensors."""

    epoch: int
    history: list[dict[str, Any]]


def normalised(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists), so fingerprints compare equal."""
    return json.loads(json.dumps(obj))


def save(
    directory: Path,
    modules: dict[str, nn.Module],
    opt: torch.optim.Optimizer,
    epoch: int,
    history: list[dict[str, Any]],
    fingerprint: dict[str, Any],
) -> None:
    """Write the checkpoint of ``epoch`` completed epochs into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{name}/{k}": v.detach().cpu().contiguous()
        for name, module in modules.items()
        for k, v in module.state_dict().items()
    }
    state = opt.state_dict()
    scalars: dict[str, Any] = {}
    for pid, entries in state["state"].items():
        for key, val in entries.items():
            if torch.is_tensor(val):
                tensors[f"optim/{pid}/{key}"] = val.detach().cpu().contiguous()
            else:
                scalars[f"{pid}/{key}"] = val
    weights = f"checkpoint-{epoch:04d}.safetensors"
    atomic_write_with(directory / weights, lambda tmp: save_file(tensors, tmp))
    write_json(
        directory / META,
        {
            "format": FORMAT,
            "version": VERSION,
            "epoch": epoch,
            "weights": weights,
            "fingerprint": fingerprint,
            "history": history,
            "optimizer_scalars": scalars,
            "param_groups": state["param_groups"],
        },
    )
    for old in directory.glob("checkpoint-*.safetensors"):
        if old.name != weights:
            old.unlink(missing_ok=True)


def load(
    directory: Path,
    modules: dict[str, nn.Module],
    opt: torch.optim.Optimizer,
    fingerprint: dict[str, Any],
) -> Resumed | None:
    """Restore the checkpoint in ``directory`` into ``modules`` and ``opt``; None if there is none.

    A checkpoint made with other data or settings, or one that does not fit the modules, raises
    :class:`ModelError` naming the folder and what differs.
    """
    stored = read(directory, fingerprint)
    return None if stored is None else restore(stored, modules, opt)


@dataclass
class Stored:
    """A checkpoint as read from disk, not yet applied (CPU tensors: it can be sent to other
    processes, which is how the ranks of a distributed training resume)."""

    directory: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def read(directory: Path, fingerprint: dict[str, Any]) -> Stored | None:
    """The checkpoint in ``directory`` if there is one, checked against ``fingerprint``."""
    path = directory / META
    if not path.exists():
        return None
    try:
        meta = read_json(path)
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ModelError(f"{path}: not a version-{VERSION} training checkpoint")
        tensors = load_file(str(directory / meta["weights"]))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise ModelError(
            f"{path}: unreadable training checkpoint ({exc}); remove {directory} to train afresh"
        ) from exc
    differs = _differences(meta.get("fingerprint", {}), normalised(fingerprint))
    if differs:
        raise ModelError(
            f"the checkpoint in {directory} was made with other data or settings "
            f"({'; '.join(differs)}); remove that folder to train afresh"
        )
    return Stored(directory, tensors, meta)


def restore(stored: Stored, modules: dict[str, nn.Module], opt: torch.optim.Optimizer) -> Resumed:
    """Apply a checkpoint :func:`read` gave to ``modules`` and ``opt``."""
    tensors, meta = stored.tensors, stored.meta
    try:
        for name, module in modules.items():
            prefix = f"{name}/"
            module.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)},
                strict=True,
            )
        opt.load_state_dict(_optimizer_state(tensors, meta))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ModelError(
            f"the checkpoint in {stored.directory} does not fit this model ({exc}); "
            "remove that folder to train afresh"
        ) from exc
    return Resumed(int(meta["epoch"]), list(meta["history"]))


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if name.startswith("optim/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = val
    for name, val in meta["optimizer_scalars"].items():
        pid, key = name.split("/", 1)
        state.setdefault(int(pid), {})[key] = val
    groups = [
        {k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
        for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key.sub: old then, new now`` for every setting that differs."""
    old, new = _flat(old), _flat(new)
    keys = sorted(set(old) | set(new))
    return [
        f"{k}: {_short(old.get(k))} then, {_short(new.get(k))} now"
        for k in keys
        if old.get(k) != new.get(k)
    ]


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
