"""Scoring with an export folder: a :class:`~stethoscope.detector.Detector` without torch.

:func:`load_onnx_detector` reads an export (``stethoscope export``) and returns the same detector
the torch runtime gives, so scoring plain recordings, the scores table, the service all work
unchanged: only the model behind it (:class:`OnnxSystem`, :class:`OnnxFusion`) and the feature
computation (numpy log-mel with the exported filterbank, or the waveform itself) differ. Imports:
numpy, soundfile, onnxruntime, safetensors and torch-free stethoscope modules; no torch, scipy,
scikit-learn or librosa (librosa only to resample a recording at another rate, if installed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

import stethoscope.backends  # noqa: F401  (registers the back ends)
import stethoscope.decision  # noqa: F401  (registers the threshold rules)
from stethoscope import SAMPLE_RATE
from stethoscope.audio import AudioError, Decoded
from stethoscope.data.clip import Clip
from stethoscope.detector import Detector, FeatureFn, Source
from stethoscope.dsp.logmel import NumpyLogMel
from stethoscope.errors import ModelError
from stethoscope.export.frontends import NumpyFrontEnd, load_frontend
from stethoscope.export.manifest import MANIFEST, checked_file, field, read_manifest
from stethoscope.pipeline.sections import (
    FusionSection,
    Results,
    SectionModel,
    check_names,
    describe_training_data,
    fuse_members,
    load_fusion_section,
    load_section,
    read_json_object,
    score_by_section,
)


def _read_sections(
    directory: Path, manifest: dict[str, Any]
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The (machine, section) pairs and the info of the (copied) system.json, once every copied
    file is checked against the manifest."""
    for entry in field(manifest, "state", list, directory):
        checked_file(directory, entry, "the model's saved state")
    path = directory / "system.json"
    if not path.is_file():
        raise ModelError(
            f"{path}: missing; the export is incomplete: run `stethoscope export` again"
        )
    meta = read_json_object(path)
    sections = meta.get("sections")
    if not isinstance(sections, list) or not all(
        isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s) for s in sections
    ):
        raise ModelError(f"{path}: field 'sections' must be a list of [machine, section]")
    for machine, section in sections:
        check_names(machine, section, path)
    info = meta.get("info") or {}
    if not isinstance(info, dict):
        raise ModelError(f"{path}: field 'info' must be a mapping")
    return [(m, s) for m, s in sections], info


class OnnxSystem:
    """An exported system: numpy front end around its ONNX networks, back ends, thresholds."""

    def __init__(self, directory: Path, threads: int | None = None) -> None:
        self.directory = directory
        self.manifest = read_manifest(directory)
        if self.manifest["kind"] != "system":
            raise ModelError(f"{directory / MANIFEST}: a fusion (load it with OnnxFusion)")
        self.name: str = self.manifest["system"]
        self.backend_input = str(field(self.manifest, "backend_input", str, directory))
        self.feature = field(self.manifest, "feature", dict, directory)
        self.channel = str(field(self.manifest, "channel", str, directory))
        self.frontend: NumpyFrontEnd = load_frontend(
            directory, field(self.manifest, "frontend", dict, directory), self.feature, threads
        )
        keys, self.info = _read_sections(directory, self.manifest)
        self.sections: dict[tuple[str, str], SectionModel] = {
            (m, s): load_section(directory / "backends", m, s) for m, s in keys
        }

    def feature_needs(self) -> list[tuple[str, str]]:
        return [(str(self.feature["name"]), self.channel)]

    def describe_training_data(self) -> str:
        return describe_training_data(self.info)

    def score_features(
        self,
        clips: Sequence[Clip],
        features: dict[tuple[str, str], list[np.ndarray]],
        keep_inputs: dict | None = None,
    ) -> Results:
        inputs = features[self.feature_needs()[0]]
        out = self.backend_input
        return score_by_section(
            self.sections,
            clips,
            inputs,
            lambda c, x: self.frontend.transform(c, x, out),
            keep_inputs,
        )

    def forget(self) -> None:
        """Nothing is remembered between batches."""


class OnnxFusion:
    """An exported fusion: its members' exports and the standardisation of their scores."""

    def __init__(self, directory: Path, threads: int | None = None) -> None:
        self.directory = directory
        self.manifest = read_manifest(directory)
        self.name: str = self.manifest["system"]
        names = field(self.manifest, "members", list, directory)
        self.members = {str(n): OnnxSystem(_member_dir(directory, n), threads) for n in names}
        keys, self.info = _read_sections(directory, self.manifest)
        self.sections: dict[tuple[str, str], FusionSection] = {
            (m, s): load_fusion_section(directory / "backends", m, s, len(self.members))
            for m, s in keys
        }

    def feature_needs(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys(n for m in self.members.values() for n in m.feature_needs()))

    def describe_training_data(self) -> str:
        return next(iter(self.members.values())).describe_training_data()

    def score_features(
        self,
        clips: list[Clip],
        features: dict[tuple[str, str], list[np.ndarray]],
        keep_inputs: dict | None = None,
    ) -> Results:
        return fuse_members(list(self.members.values()), self.sections, clips, features)

    def forget(self) -> None:
        for member in self.members.values():
            member.forget()


def _member_dir(directory: Path, name: Any) -> Path:
    if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
        raise ModelError(f"{directory / MANIFEST}: member name {name!r} is not a folder name")
    return directory / "members" / name


def _models(model: OnnxSystem | OnnxFusion) -> list[OnnxSystem]:
    return list(model.members.values()) if isinstance(model, OnnxFusion) else [model]


def _feature_fn(model: OnnxSystem | OnnxFusion) -> tuple[FeatureFn, dict[tuple[str, str], int]]:
    """The numpy feature computation of every need of the model, and their sample rates."""
    compute: dict[tuple[str, str], Any] = {}
    rates: dict[tuple[str, str], int] = {}
    for system in _models(model):
        need = system.feature_needs()[0]
        config = system.feature.get("config") or {}
        rates[need] = int(config.get("sample_rate", SAMPLE_RATE))
        if need in compute:
            continue
        if need[0] == "logmel":
            compute[need] = _log_mel(system.directory, system.feature)
        elif need[0] == "waveform":
            compute[need] = lambda w: np.asarray(w, dtype=np.float32)
        else:
            raise ModelError(f"{system.directory / MANIFEST}: unknown feature {need[0]!r}")

    def feature_fn(need: tuple[str, str], waves: list[np.ndarray]) -> list[np.ndarray]:
        return [compute[need](w) for w in waves]

    return feature_fn, rates


def _log_mel(directory: Path, feature: dict[str, Any]) -> Any:
    path = checked_file(directory, feature.get("filterbank"), "the mel filterbank")
    try:
        fb = load_file(str(path))["filterbank"]
    except (OSError, SafetensorError, KeyError) as exc:
        raise ModelError(f"{path}: no usable filterbank ({exc})") from exc
    c = feature.get("config") or {}
    try:
        extractor = NumpyLogMel(
            fb, int(c["n_fft"]), int(c["hop_length"]), float(c["power"]), int(c["n_frames"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{directory / MANIFEST}: bad log-mel settings ({exc})") from exc
    if "n_mels" in c and extractor.n_mels != int(c["n_mels"]):
        raise ModelError(f"{path}: {extractor.n_mels} mel bands, the manifest says {c['n_mels']}")
    return extractor.vectors


class OnnxDetector(Detector):
    """A detector on an export: a recording at another sample rate is resampled with librosa when
    it is installed, and refused with the reason when it is not."""

    def _decode(self, source: Source, label: str, sample_rate: int | None) -> Decoded:
        decoded = super()._decode(source, label, sample_rate)
        want = max(self._rates.values(), default=SAMPLE_RATE)
        if decoded.sample_rate != want and not _librosa_available():
            raise AudioError(
                label,
                f"sample rate {decoded.sample_rate} Hz, the model takes {want} Hz: resampling "
                "needs librosa, which is not installed (install it, or resample the recording)",
            )
        return decoded


def _librosa_available() -> bool:
    try:
        import librosa  # noqa: F401
    except ImportError:
        return False
    return True


def load_onnx_detector(directory: str | Path, *, threads: int | None = None) -> Detector:
    """A detector scoring with the export in ``directory`` (``threads``: onnxruntime's threads per
    network, None for its default)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    model: OnnxSystem | OnnxFusion = (
        OnnxFusion(directory, threads)
        if manifest["kind"] == "fusion"
        else OnnxSystem(directory, threads)
    )
    feature_fn, rates = _feature_fn(model)
    return OnnxDetector(
        model, model.name, manifest["source_model_id"], feature_fn, rates,
        directory=directory, runtime="onnx",
    )  # fmt: skip
