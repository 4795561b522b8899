"""A fitted system on disk: everything needed to score new clips, and nothing that needs pickle.

Layout of MODEL_DIR:
  system.json                      system config, machines/sections, versions, what it was made from
  frontend/                        front-end weights (safetensors) + config (JSON)
  backends/<machine>_section_<ss>.{safetensors,json}   back-end state + threshold

Loading trusts nothing in the folder: a file that is missing, truncated or of the wrong type, an
unknown component, a name that would leave the folder, a tensor of another shape than the one
recorded with it, a NaN in the state or the threshold: each is a :class:`ModelError` naming the
file and the field, raised before the model is used (the front end checks its own tensors' shapes
before allocating them).
"""

from __future__ import annotations

import math
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError, safe_open

from stethoscope import __version__
from stethoscope.backends.base import BACKENDS, Backend
from stethoscope.data.catalog import OnError
from stethoscope.data.clip import Clip
from stethoscope.decision.base import ThresholdRule
from stethoscope.errors import ModelError, StethoscopeError
from stethoscope.models.base import FRONTENDS, FrontEnd
from stethoscope.progress import Progress
from stethoscope.state_io import load_state, read_json, save_state, write_json
from stethoscope.systems import SystemConfig

if TYPE_CHECKING:
    from stethoscope.pipeline.fusion import FusionModel

FORMAT_VERSION = 1
#: machine type names that are safe as part of a file name (no folder separators, no "..")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
SECTION = re.compile(r"^\d{2}$")
#: (machine, section) -> (clips, scores, decisions)
Results = dict[tuple[str, str], tuple[list[Clip], np.ndarray, np.ndarray]]


@dataclass
class SectionModel:
    backend: Backend
    threshold: ThresholdRule
    n_train: int = 0


@dataclass
class SystemModel:
    config: SystemConfig
    frontend: FrontEnd
    sections: dict[tuple[str, str], SectionModel] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def machines(self) -> list[str]:
        return sorted({m for m, _ in self.sections})

    #: scoring on another channel than the model was trained on (:func:`stethoscope.pipeline.
    #: score.choose_channel`)
    channel_override: str | None = None

    @property
    def trained_channel(self) -> str:
        """What the front end read of multi-channel recordings in training ("mix" before
        channels were recorded)."""
        return str((self.info.get("trained_on") or {}).get("channel") or "mix")

    @property
    def channel(self) -> str:
        """What the front end reads when it scores."""
        return self.channel_override or self.trained_channel

    def describe_training_data(self) -> str:
        """One line on what the model was trained on, for users reusing it."""
        data = (self.info.get("trained_on") or {}).get("data")
        if not data:
            return "training data not recorded (a model from an older Stethoscope)"
        return (
            f"{data.get('root')} (machine types {', '.join(data.get('machines', []))}; "
            f"{data.get('n_train')} training clips, fingerprint {data.get('train_clips')})"
        )

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.frontend.save(directory / "frontend")
        for (machine, section), sm in self.sections.items():
            check_names(machine, section, directory / "system.json")
            arrays, meta = sm.backend.get_state()
            meta = {
                "backend": sm.backend.name,
                "state": meta,
                "threshold": sm.threshold.get_state(),
                "n_train": sm.n_train,
            }
            save_section_state(directory / "backends", machine, section, arrays, meta)
        # system.json last: its presence marks a complete model directory
        write_json(
            directory / "system.json",
            {
                "format_version": FORMAT_VERSION,
                "stethoscope_version": __version__,
                "python": platform.python_version(),
                "system": self.config.to_dict(),
                "sections": [[m, s] for m, s in sorted(self.sections)],
                "info": self.info,
            },
        )

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> SystemModel:
        directory = Path(directory)
        meta, config = read_system_json(directory)
        if config.members:
            raise ModelError(f"{directory}: a fusion of systems (load it with load_model)")
        try:
            frontend = FRONTENDS.get(config.frontend.name).load(
                directory / "frontend", device=device
            )
        except StethoscopeError:
            raise
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise ModelError(f"{directory / 'frontend'}: unusable front-end state ({exc})") from exc
        sections: dict[tuple[str, str], SectionModel] = {}
        for machine, section in meta["sections"]:
            check_names(machine, section, directory / "system.json")
            sections[(machine, section)] = _load_section(directory / "backends", machine, section)
        return cls(config=config, frontend=frontend, sections=sections, info=meta["info"])

    def score_clips(
        self,
        clips: Sequence[Clip],
        *,
        cache_dir: Path | None = None,
        device: str = "auto",
        on_error: OnError = "skip",
        progress: Progress | None = None,
        keep_inputs: dict | None = None,
    ) -> tuple[Results, list[tuple[Path, str]]]:
        """Scores and decisions per (machine, section) for clips the model has a back end for.

        ``keep_inputs`` (a dict) receives the back-end inputs per (machine, section), so callers
        that also need them (embedding maps) do not run the front end twice.
        """
        from stethoscope.pipeline.features import features_for

        kept, feats, failures = features_for(
            self.feature_needs(), clips, cache_dir=cache_dir, device=device, on_error=on_error,
            progress=progress,
        )  # fmt: skip
        return self.score_features(kept, feats, keep_inputs), failures

    def feature_needs(self) -> list[tuple[str, str]]:
        """What it reads of a clip: (feature extractor, channel)."""
        return [(self.frontend.feature, self.channel)]

    def score_features(
        self,
        clips: Sequence[Clip],
        features: dict[tuple[str, str], list[np.ndarray]],
        keep_inputs: dict | None = None,
    ) -> Results:
        """:meth:`score_clips` for clips whose features are at hand (per :meth:`feature_needs`)."""
        inputs = features[(self.frontend.feature, self.channel)]
        out: Results = {}
        groups: dict[tuple[str, str], list[int]] = {}
        for j, c in enumerate(clips):
            groups.setdefault((c.machine, c.section), []).append(j)
        for key, idx in sorted(groups.items()):
            sm = self.sections[key]
            x = self.frontend.transform(
                [clips[j] for j in idx], [inputs[j] for j in idx], self.config.backend_input
            )
            scores = np.asarray(sm.backend.score(x), dtype=np.float64)
            if keep_inputs is not None:
                keep_inputs[key] = x
            out[key] = ([clips[j] for j in idx], scores, sm.threshold.decide(scores))
        return out

    def forget(self) -> None:
        """Drop what the front end remembers of clips it has scored (a long-running service
        scores an unbounded stream of them)."""
        self.frontend.forget()


def read_system_json(directory: Path) -> tuple[dict[str, Any], SystemConfig]:
    """A model folder's system.json, checked, and the system it describes."""
    meta_path = directory / "system.json"
    if not meta_path.exists():
        raise ModelError(
            f"{directory}: not a model directory (no system.json); train one with `stethoscope fit`"
        )
    meta = _read_json(meta_path)
    version = meta.get("format_version", 0)
    if not isinstance(version, int):
        raise ModelError(f"{meta_path}: field 'format_version' must be an integer")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{directory}: model format {version} is newer than this stethoscope "
            f"({FORMAT_VERSION}); upgrade stethoscope"
        )
    try:
        config = SystemConfig.from_dict(meta["system"])
        config.check()
    except StethoscopeError as exc:  # an unknown component, or one that does not fit
        raise ModelError(f"{meta_path}: field 'system': {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{meta_path}: field 'system' is not a system definition ({exc})") from exc
    sections = meta.get("sections")
    if not isinstance(sections, list) or not all(
        isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s) for s in sections
    ):
        raise ModelError(f"{meta_path}: field 'sections' must be a list of [machine, section]")
    meta.setdefault("info", {})
    if not isinstance(meta["info"], dict):
        raise ModelError(f"{meta_path}: field 'info' must be a mapping")
    return meta, config


def load_model(directory: str | Path, device: str = "auto") -> SystemModel | FusionModel:
    """A saved system or fusion of systems, whichever the folder holds."""
    directory = Path(directory)
    meta, config = read_system_json(directory)
    if config.members:
        from stethoscope.pipeline.fusion import FusionModel

        return FusionModel.load(directory, config, meta, device)
    return SystemModel.load(directory, device)


def is_model_dir(directory: str | Path) -> bool:
    return (Path(directory) / "system.json").exists()


def _read_json(path: Path) -> dict[str, Any]:
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
    meta = _read_json(json_path)
    recorded = meta.get("arrays")
    if weights.exists() or recorded:
        _check_arrays(weights, recorded)
    try:
        arrays, _ = load_state(folder, name)
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"{weights}: unreadable ({exc})") from exc
    for key, value in arrays.items():
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ModelError(f"{weights}: tensor '{key}' holds NaN or infinite values")
    threshold = meta.get("threshold")
    if not isinstance(threshold, dict):
        raise ModelError(f"{json_path}: field 'threshold' must be a mapping")
    thr = threshold.get("value")
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr):
        raise ModelError(f"{json_path}: field 'threshold.value' must be a finite number")
    return arrays, meta, json_path


def _load_section(folder: Path, machine: str, section: str) -> SectionModel:
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
