"""Pickle-free persistence: arrays in safetensors, everything else in JSON, written atomically.

Every saved component (network weights, back-end statistics, thresholds) goes through these two
functions, so a model directory can be inspected with any safetensors/JSON reader and loading it
never executes code.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file


def new_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give a new file under this umask.

    Temporary files come from ``mkstemp`` with mode 0600; they get this mode before being renamed
    into place, so outputs honour the user's umask like any other program's files.
    """
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask


def make_temp(directory: Path, name: str) -> tuple[int, str]:
    """(fd, path) of a new temporary file next to ``name`` in ``directory``, with the umask's mode."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    os.fchmod(fd, new_file_mode())
    return fd, tmp


def atomic_write_with(path: str | Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` fills a temporary file beside ``path``, which then replaces ``path`` at once:
    a reader sees the old file or the new one, never half of one (for writers that want a path,
    such as safetensors' ``save_file``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp(path.parent, path.name)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode())  # some writers replace the file they were given
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_state(directory: str | Path, name: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``name.safetensors`` (arrays) and ``name.json`` (meta) into ``directory``."""
    directory = Path(directory)
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    atomic_write_with(
        directory / f"{name}.safetensors",
        lambda tmp: save_file(arrays, tmp, metadata={"format": "stethoscope"}),
    )
    write_json(directory / f"{name}.json", meta)


def load_state(directory: str | Path, name: str) -> tuple[dict[str, np.ndarray], dict]:
    directory = Path(directory)
    st = directory / f"{name}.safetensors"
    arrays = load_file(str(st)) if st.exists() else {}
    meta = read_json(directory / f"{name}.json")
    return arrays, meta


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
