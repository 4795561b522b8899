"""``stethoscope export``: a model folder written out as an export folder (needs torch and onnx).

Layout of an export folder (a system)::

  manifest.json                 what this is (:mod:`.manifest`): source model_id, system,
                                features, front end, and every file below with its SHA-256
  system.json                   the model's own, as it is
  backends/*.json, *.safetensors  the back ends' state and thresholds, as they are
  frontend/*.onnx               the front end's networks (none for the spectral front end)
  features/logmel_filterbank.safetensors  the mel filterbank (log-mel front ends), so the
                                runtime needs no librosa

A fusion holds its members' exports in ``members/<name>/`` beside its own system.json,
backends/ and manifest. The folder is written beside its destination under a temporary name and
renamed into place, so it appears whole or not at all; an existing folder is replaced only if it
is an export (or empty).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors.numpy import save_file

from stethoscope import __version__
from stethoscope.detector import model_id
from stethoscope.errors import ConfigError, ModelError
from stethoscope.export.manifest import FORMAT, MANIFEST, OPSET, VERSION, file_entry, is_export_dir
from stethoscope.export.networks import export_frontend
from stethoscope.features import FEATURES
from stethoscope.features.logmel import LogMelConfig, mel_filterbank
from stethoscope.pipeline.fusion import FusionModel
from stethoscope.pipeline.system_model import SystemModel, is_model_dir, load_model
from stethoscope.state_io import write_json

FILTERBANK = "features/logmel_filterbank.safetensors"


def export_model(model_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Export the model folder ``model_dir`` into ``out``; returns the manifest written."""
    src, out = Path(model_dir), Path(out)
    if not is_model_dir(src):
        raise ModelError(
            f"{src}: not a model folder (no system.json); train one with `stethoscope fit`"
        )
    _check_destination(src, out)
    model = load_model(src, device="cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    try:
        manifest = _export(model, src, tmp)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _check_destination(src: Path, out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; choose another --out")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise ConfigError(f"{out}: the export cannot go into the model folder itself")
    if out.is_dir() and any(out.iterdir()) and not is_export_dir(out):
        raise ConfigError(
            f"{out} exists and is not a Stethoscope export folder; choose a new or empty folder "
            "for --out (an earlier export there would be replaced)"
        )


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished export into place; an earlier export (or empty folder) there goes."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        out.rename(old / "export")
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    tmp.chmod(0o777 & ~mask)  # mkdtemp's folder is private; the export is as any other folder
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _export(model: SystemModel | FusionModel, src: Path, dst: Path) -> dict[str, Any]:
    if isinstance(model, FusionModel):
        return _export_fusion(model, src, dst)
    return _export_system(model, src, dst)


def _export_system(model: SystemModel, src: Path, dst: Path) -> dict[str, Any]:
    dst.mkdir(parents=True, exist_ok=True)
    frontend = export_frontend(model.frontend, model.config.backend_input, dst)
    feature = _export_feature(model.frontend.feature, model.channel, dst)
    state = _copy_state(src, dst)
    manifest = {
        **_header(model.config.name, "system", src),
        "state": state,
        "backend_input": model.config.backend_input,
        "channel": model.channel,
        "feature": feature,
        "frontend": frontend,
    }
    write_json(dst / MANIFEST, manifest)
    return manifest


def _export_fusion(model: FusionModel, src: Path, dst: Path) -> dict[str, Any]:
    dst.mkdir(parents=True, exist_ok=True)
    for name, member in model.members.items():
        _export_system(member, src / "members" / name, dst / "members" / name)
    state = _copy_state(src, dst)
    manifest = {
        **_header(model.config.name, "fusion", src),
        "state": state,
        "members": list(model.members),
    }
    write_json(dst / MANIFEST, manifest)
    return manifest


def _header(system: str, kind: str, src: Path) -> dict[str, Any]:
    import onnx
    import torch

    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "system": system,
        "source_model_id": model_id(src),
        "stethoscope_version": __version__,
        "exported_with": {"torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET},
    }


def _export_feature(name: str, channel: str, dst: Path) -> dict[str, Any]:
    """The feature's full configuration, as the torch detector computes it, and for log-mel the
    filterbank (taken from librosa here, once)."""
    extractor = FEATURES.get(name)(channel=channel)
    config = asdict(extractor.config)
    entry: dict[str, Any] = {"name": name, "version": extractor.version, "config": config}
    if name == "logmel":
        c: LogMelConfig = extractor.config
        fb = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax)
        path = dst / FILTERBANK
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"filterbank": fb}, str(path), metadata={"format": FORMAT})
        entry["filterbank"] = file_entry(dst, path)
    elif name != "waveform":
        raise ConfigError(f"the '{name}' feature cannot be computed without torch (not exportable)")
    return entry


def _copy_state(src: Path, dst: Path) -> list[dict[str, str]]:
    """system.json and the back ends' files, byte for byte; their manifest entries."""
    shutil.copy2(src / "system.json", dst / "system.json")
    copied = [dst / "system.json"]
    (dst / "backends").mkdir(exist_ok=True)
    for path in sorted((src / "backends").glob("*")):
        if path.suffix in (".json", ".safetensors") and not path.name.startswith("."):
            shutil.copy2(path, dst / "backends" / path.name)
            copied.append(dst / "backends" / path.name)
    return [file_entry(dst, p) for p in copied]
