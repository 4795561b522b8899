"""The manifest of an export folder: what was exported, from which model, and which file is what.

``manifest.json`` names the source model (its ``model_id``), the system, the features (their full
configuration, and the mel filterbank file for log-mel), and the front end: its ONNX networks by
file, each with its SHA-256 so that a damaged or replaced file is refused by name before it is
used, and the parameters the numpy code around the networks needs (frame stacking, window length,
views, the noise reference's gains). A fusion's manifest lists its members, each exported into
``members/<name>/`` with its own manifest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Any

from stethoscope.errors import ModelError
from stethoscope.state_io import read_json

FORMAT = "stethoscope.onnx-export"
VERSION = 1
MANIFEST = "manifest.json"
#: the ONNX opset the networks are written with (STFT-free graphs; 17 is onnxruntime >= 1.14's)
OPSET = 17


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(directory: Path, path: Path) -> dict[str, str]:
    """How the manifest names a file of the export: its path inside the folder and its digest."""
    return {"file": path.relative_to(directory).as_posix(), "sha256": file_digest(path)}


def is_export_dir(directory: str | Path) -> bool:
    """Whether ``directory`` holds a manifest written by ``stethoscope export``."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return False
    try:
        meta = read_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an export folder, checked to be one of this format and version."""
    path = directory / MANIFEST
    if not path.is_file():
        hint = " (a model folder: export it with `stethoscope export`)"
        raise ModelError(
            f"{directory}: not an ONNX export (no {MANIFEST})"
            + (hint if (directory / "system.json").is_file() else "")
        )
    try:
        meta = read_json(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not a Stethoscope ONNX export manifest")
    if meta.get("version") != VERSION:
        raise ModelError(
            f"{path}: export format version {meta.get('version')!r}; this stethoscope reads "
            f"version {VERSION} (export the model again)"
        )
    for key, kind in (("kind", str), ("system", str), ("source_model_id", str)):
        if not isinstance(meta.get(key), kind):
            raise ModelError(f"{path}: field {key!r} missing or not a {kind.__name__}")
    if meta["kind"] not in ("system", "fusion"):
        raise ModelError(f"{path}: field 'kind' must be 'system' or 'fusion'")
    return meta


def checked_file(directory: Path, entry: Any, what: str) -> Path:
    """The file a manifest entry names, inside the folder, present and with its recorded digest."""
    manifest = directory / MANIFEST
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ModelError(f"{manifest}: {what}: no file named")
    rel = PurePosixPath(entry["file"])
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ModelError(f"{manifest}: {what}: {entry['file']!r} is not a path inside the export")
    path = directory.joinpath(*rel.parts)
    if not path.is_file():
        raise ModelError(
            f"{path}: missing ({what}); the export is incomplete: run `stethoscope export` again"
        )
    if file_digest(path) != entry.get("sha256"):
        raise ModelError(
            f"{path}: contents differ from the manifest ({what}); the file was changed or "
            "damaged after the export: run `stethoscope export` again"
        )
    return path


def field(meta: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    """``meta[key]`` checked to be of ``kind``; :class:`ModelError` naming the manifest if not."""
    value = meta.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise ModelError(f"{where / MANIFEST}: field {key!r} missing or of the wrong type")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
