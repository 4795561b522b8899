"""The saved state of a model's sections: per machine type and section, a back end and its decision
threshold, or a fusion's standardisation of its members' scores.

``backends/<machine>_section_<ss>.{safetensors,json}`` of a model folder. This module needs numpy
alone (no torch), so the ONNX runtime loads an exported model's sections with the same checks as
:mod:`stethoscope.pipeline.system_model`: a file that is missing, truncated or of the wrong type,
an unknown back end or rule, a tensor of another shape than the one recorded with it, a NaN in the
state or the threshold: each is a :class:`ModelError` naming the file and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from safetensors import SafetensorError, safe_open

from stethoscope.backends.base import BACKENDS, Backend
from stethoscope.data.clip import Clip
from stethoscope.decision.base import ThresholdRule
from stethoscope.errors import ModelError, StethoscopeError
from stethoscope.state_io import load_state, read_json, save_state

#: machine type names that are safe as part of a file name (no folder separators, no "..")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
SECTION = re.compile(r"^\d{2}$")
#: the array of a back end's training scores as unseen clips (NaN: a clip it could not hold out)
HELD_OUT = "held_out"
#: (machine, section) -> (clips, scores, decisions)
Results = dict[tuple[str, str], tuple[list[Clip], np.ndarray, np.ndarray]]


@dataclass
class SectionModel:
    backend: Backend
    threshold: ThresholdRule
    n_train: int = 0


@dataclass
class FusionSection:
    """Per member: the mean and standard deviation of its training scores; and the threshold."""

    means: np.ndarray
    stds: np.ndarray
    threshold: ThresholdRule
    n_train: int = 0

    def fuse(self, member_scores: np.ndarray) -> np.ndarray:
        """(N, M) member scores -> (N,) mean of the standardised scores."""
        return ((member_scores - self.means) / self.stds).mean(axis=1)


class _Scorer(Protocol):
    def score_features(
        self, clips: list[Clip], features: dict[tuple[str, str], list[np.ndarray]]
    ) -> Results: ...


def fuse_members(
    members: list[_Scorer],
    sections: dict[tuple[str, str], FusionSection],
    clips: list[Clip],
    features: dict[tuple[str, str], list[np.ndarray]],
) -> Results:
    """Each member scores the clips from their features; the fused scores per section (a clip
    any member could not score is left out)."""
    per_member = [m.score_features(clips, features) for m in members]
    out: Results = {}
    for key, fs in sorted(sections.items()):
        if not all(key in res for res in per_member):
            continue
        by_path = [{str(c.path): s for c, s in zip(*res[key][:2])} for res in per_member]
        kept = [c for c in per_member[0][key][0] if all(str(c.path) in b for b in by_path)]
        scores = np.array([[b[str(c.path)] for b in by_path] for c in kept], dtype=np.float64)
        fused = fs.fuse(scores.reshape(len(kept), len(by_path)))
        out[key] = (kept, fused, fs.threshold.decide(fused))
    return out


def describe_training_data(info: dict[str, Any]) -> str:
    """One line on what a model was trained on (its system.json ``info``), for users reusing it."""
    data = (info.get("trained_on") or {}).get("data")
    if not data:
        return "training data not recorded (a model from an older Stethoscope)"
    return (
        f"{data.get('root')} (machine types {', '.join(data.get('machines', []))}; "
        f"{data.get('n_train')} training clips, fingerprint {data.get('train_clips')})"
    )


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object; :class:`ModelError` naming it otherwise."""
    try:
        meta = read_json(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return meta


def check_names(machine: str, section: str, source: Path) -> None:
    if not SAFE_NAME.match(machine) or ".." in machine:
        raise ModelError(f"{source}: machine type name {machine!r} is not a plain file name")
    if not SECTION.match(section):
        raise ModelError(f"{source}: section {section!r} is not two digits")


def save_section_state(
    folder: Path, machine: str, section: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> None:
    """One section's arrays and JSON, the arrays' shapes recorded for :func:`load_section_state`."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    shapes = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}
    save_state(folder, f"{machine}_section_{section}", arrays, {**meta, "arrays": shapes})


def load_section_state(
    folder: Path, machine: str, section: str
) -> tuple[dict[str, np.ndarray], dict[str, Any], Path]:
    """The arrays and JSON of one section's state, checked (shapes as recorded, no NaN)."""
    name = f"{machine}_section_{section}"
    json_path, weights = folder / f"{name}.json", folder / f"{name}.safetensors"
    meta = read_json_object(json_path)
    recorded = meta.get("arrays")
    if weights.exists() or recorded:
        _check_arrays(weights, recorded)
    try:
        arrays, _ = load_state(folder, name)
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"{weights}: unreadable ({exc})") from exc
    for key, value in arrays.items():
        # held-out training scores mark the clips a back end could not hold out with NaN
        allowed = np.isnan(value) if key.rsplit(".", 1)[-1] == HELD_OUT else False
        if value.dtype.kind == "f" and not np.all(np.isfinite(value) | allowed):
            raise ModelError(f"{weights}: tensor '{key}' holds NaN or infinite values")
    threshold = meta.get("threshold")
    if not isinstance(threshold, dict):
        raise ModelError(f"{json_path}: field 'threshold' must be a mapping")
    thr = threshold.get("value")
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr):
        raise ModelError(f"{json_path}: field 'threshold.value' must be a finite number")
    return arrays, meta, json_path


def load_section(folder: Path, machine: str, section: str) -> SectionModel:
    """A system's section: its back end and threshold rule, rebuilt from their saved state."""
    arrays, meta, json_path = load_section_state(folder, machine, section)
    backend_name = meta.get("backend")
    if not isinstance(backend_name, str) or backend_name not in BACKENDS:
        raise ModelError(f"{json_path}: field 'backend': unknown back end {backend_name!r}")
    threshold = meta["threshold"]
    try:
        backend = BACKENDS.get(backend_name).from_state(arrays, meta.get("state") or {})
        rule = ThresholdRule.from_state(threshold)
        n_train = int(meta.get("n_train", 0))
    except KeyError as exc:
        raise ModelError(f"{json_path}: missing field or tensor {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{json_path}: a field of the wrong type or value ({exc})") from exc
    except StethoscopeError as exc:  # e.g. an unknown threshold rule
        raise ModelError(f"{json_path}: {exc}") from exc
    return SectionModel(backend, rule, n_train)


def load_fusion_section(folder: Path, machine: str, section: str, n_members: int) -> FusionSection:
    """A fusion's section: one mean and standard deviation per member, and the threshold."""
    arrays, smeta, path = load_section_state(folder, machine, section)
    try:
        means, stds = arrays["means"], arrays["stds"]
        threshold = ThresholdRule.from_state(smeta["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: not a fusion section ({exc})") from exc
    if means.shape != (n_members,) or stds.shape != (n_members,):
        raise ModelError(f"{path}: 'means' and 'stds' need one value per member")
    return FusionSection(means, stds, threshold, int(smeta.get("n_train", 0)))


def _check_arrays(weights: Path, recorded: Any) -> None:
    """The safetensors header against the shapes and dtypes recorded when the model was saved."""
    if not isinstance(recorded, dict):
        raise ModelError(f"{weights.with_suffix('.json')}: field 'arrays' must be a mapping")
    if not weights.exists():
        raise ModelError(f"{weights}: missing")
    try:
        with safe_open(str(weights), framework="numpy") as fh:
            names = set(fh.keys())
            shapes = {k: list(fh.get_slice(k).get_shape()) for k in names}
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"{weights}: unreadable or truncated ({exc})") from exc
    for key, spec in recorded.items():
        if key not in names:
            raise ModelError(f"{weights}: tensor '{key}' is missing")
        want = spec.get("shape") if isinstance(spec, dict) else None
        if shapes[key] != want:
            raise ModelError(f"{weights}: tensor '{key}' has shape {shapes[key]}, expected {want}")
    extra = sorted(names - set(recorded))
    if extra:
        raise ModelError(f"{weights}: unexpected tensor(s) {', '.join(extra)}")


def score_by_section(
    sections: dict[tuple[str, str], SectionModel],
    clips: Sequence[Clip],
    inputs: Sequence[np.ndarray],
    transform: Callable[[list[Clip], list[np.ndarray]], Any],
    keep_inputs: dict | None = None,
) -> Results:
    """Each (machine, section)'s clips through ``transform`` (the front end) and its back end and
    threshold; ``keep_inputs`` receives each section's back-end input when given."""
    out: Results = {}
    groups: dict[tuple[str, str], list[int]] = {}
    for j, c in enumerate(clips):
        groups.setdefault((c.machine, c.section), []).append(j)
    for key, idx in sorted(groups.items()):
        sm = sections[key]
        x = transform([clips[j] for j in idx], [inputs[j] for j in idx])
        scores = np.asarray(sm.backend.score(x), dtype=np.float64)
        if keep_inputs is not None:
            keep_inputs[key] = x
        out[key] = ([clips[j] for j in idx], scores, sm.threshold.decide(scores))
    return out
