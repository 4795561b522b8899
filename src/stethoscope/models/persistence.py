"""The one saved-model format of every front end: ``frontend.safetensors`` + ``frontend.json``.

The JSON reads ``{"format": "stethoscope.frontend", "version": 1, "frontend": "<name>",
"config": {...}, ...}``; the safetensors file holds each module's state under ``<part>/`` (a
machine type, an ensemble member, "model", "head"). Loading checks format, version and front end
first, then builds every network on the "meta" device and compares its parameter shapes and dtypes
with the file's before anything is allocated: a tampered JSON field fails with a clear
:class:`ModelError` instead of allocating whatever it describes. Nothing here unpickles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from stethoscope.errors import ConfigError, ModelError
from stethoscope.models.base import FrontEnd
from stethoscope.state_io import atomic_write_with, read_json, write_json

FORMAT = "stethoscope.frontend"
VERSION = 1
WEIGHTS = "frontend.safetensors"
META = "frontend.json"

C = TypeVar("C")
M = TypeVar("M", bound=nn.Module)


def config_from(cls: type[C], params: dict[str, Any], ignore: tuple[str, ...] = ()) -> C:
    """Build the dataclass ``cls`` from ``params``; an unknown key is a :class:`ConfigError`
    (a misspelt setting must not be silently dropped). Keys in ``ignore`` belong to the caller."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - known - set(ignore))
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    values = {}
    for k, v in params.items():
        if k in known:
            values[k] = tuple(v) if isinstance(v, list) else v  # JSON gives lists for tuples
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad {cls.__name__} settings: {exc}") from exc


def save(
    directory: Path,
    frontend: str,
    config: dict[str, Any],
    parts: dict[str, nn.Module],
    **extra: Any,
) -> None:
    """Write the modules in ``parts`` and the JSON description into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{part}/{k}": v.detach().cpu().contiguous()
        for part, module in parts.items()
        for k, v in module.state_dict().items()
    }
    if tensors:
        atomic_write_with(
            directory / WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT})
        )
    write_json(
        directory / META,
        {"format": FORMAT, "version": VERSION, "frontend": frontend, "config": config, **extra},
    )


def read_meta(directory: Path, frontend: str) -> dict[str, Any]:
    """The JSON of a saved front end, checked to be ours, of this version and of ``frontend``."""
    path = Path(directory) / META
    try:
        meta = read_json(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: missing; not a saved front end") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(
            f"{path}: not a stethoscope front end (format "
            f"{meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    if meta.get("version") != VERSION:
        raise ModelError(
            f"{path}: front-end format version {meta.get('version')!r}; this "
            f"stethoscope reads version {VERSION}"
        )
    if meta.get("frontend") != frontend:
        raise ModelError(f"{path}: holds a '{meta.get('frontend')}' front end, not '{frontend}'")
    if not isinstance(meta.get("config"), dict):
        raise ModelError(f"{path}: no config")
    return meta


def load_part(directory: Path, part: str, build: Callable[[], M], device: torch.device) -> M:
    """Module ``part`` of a saved front end: ``build()`` runs on the meta device, the file's
    tensors must match it name for name, shape for shape and dtype for dtype, then they load."""
    path = Path(directory) / WEIGHTS
    try:
        with torch.device("meta"):
            module = build()
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelError(
            f"{Path(directory) / META}: config does not describe a network ({exc})"
        ) from exc
    expected = module.state_dict()
    prefix = f"{part}/"
    try:
        with safe_open(str(path), framework="pt") as fh:
            names = {k[len(prefix) :] for k in fh.keys() if k.startswith(prefix)}
            if names != set(expected):
                missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
                raise ModelError(
                    f"{path}: tensors of '{part}' do not fit the network described in "
                    f"{META} (missing {missing[:5]}, unexpected {extra[:5]})"
                )
            for k, t in expected.items():
                sl = fh.get_slice(prefix + k)
                shape, dtype = tuple(sl.get_shape()), sl.get_dtype()
                if shape != tuple(t.shape) or dtype != _DTYPES.get(t.dtype):
                    raise ModelError(
                        f"{path}: '{prefix}{k}' is {dtype}{list(shape)}, the network "
                        f"described in {META} needs {_DTYPES.get(t.dtype)}"
                        f"{list(t.shape)}"
                    )
            tensors = {k: fh.get_tensor(prefix + k) for k in expected}
    except (OSError, RuntimeError, SafetensorError) as exc:
        raise ModelError(f"{path}: unreadable ({exc})") from exc
    module.load_state_dict(tensors, strict=True, assign=True)
    if any(t.is_meta for t in [*module.parameters(), *module.buffers()]):
        raise ModelError(f"{path}: '{part}' has tensors the file does not hold")
    return module.to(device).eval()


_DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.bool: "BOOL",
}


F = TypeVar("F", bound=FrontEnd)


def rebuild(cls: type[F], directory: Path, device: str) -> tuple[F, dict[str, Any]]:
    """An untrained ``cls`` with the saved config, and the saved JSON (see :func:`read_meta`)."""
    meta = read_meta(directory, cls.name)
    try:
        return cls(meta["config"], device=device), meta
    except ConfigError as exc:
        raise ModelError(f"{Path(directory) / META}: {exc}") from exc
