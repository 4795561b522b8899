"""A fitted system on disk: everything needed to score new clips, and nothing that needs pickle.

Layout of MODEL_DIR:
  system.json                      system config, machines/sections, versions, what it was made from
  frontend/                        front-end weights (safetensors) + config (JSON)
  backends/<machine>_section_<ss>.{safetensors,json}   back-end state + threshold
                                   (:mod:`stethoscope.pipeline.sections`)

Loading trusts nothing in the folder: a file that is missing, truncated or of the wrong type, an
unknown component, a name that would leave the folder, a tensor of another shape than the one
recorded with it, a NaN in the state or the threshold: each is a :class:`ModelError` naming the
file and the field, raised before the model is used (the front end checks its own tensors' shapes
before allocating them).
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stethoscope import __version__
from stethoscope.data.catalog import OnError
from stethoscope.data.clip import Clip
from stethoscope.errors import ModelError, StethoscopeError
from stethoscope.models.base import FRONTENDS, FrontEnd
from stethoscope.pipeline.sections import (
    SAFE_NAME,
    SECTION,
    Results,
    SectionModel,
    check_names,
    describe_training_data,
    load_section,
    load_section_state,
    read_json_object,
    save_section_state,
    score_by_section,
)
from stethoscope.progress import Progress
from stethoscope.state_io import write_json
from stethoscope.systems import SystemConfig

if TYPE_CHECKING:
    from stethoscope.pipeline.fusion import FusionModel

__all__ = [
    "FORMAT_VERSION",
    "SAFE_NAME",
    "SECTION",
    "Results",
    "SectionModel",
    "SystemModel",
    "check_names",
    "is_model_dir",
    "load_model",
    "load_section_state",
    "read_system_json",
    "save_section_state",
]

FORMAT_VERSION = 1


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
        return describe_training_data(self.info)

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
        write_system_json(directory, self.config, self.sections, self.info)

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
            sections[(machine, section)] = load_section(directory / "backends", machine, section)
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
        out = self.config.backend_input
        return score_by_section(
            self.sections,
            clips,
            inputs,
            lambda c, x: self.frontend.transform(c, x, out),
            keep_inputs,
        )

    def forget(self) -> None:
        """Drop what the front end remembers of clips it has scored (a long-running service
        scores an unbounded stream of them)."""
        self.frontend.forget()


def write_system_json(
    directory: Path, config: SystemConfig, sections: Any, info: dict[str, Any]
) -> None:
    """The model folder's system.json: format, versions, the system, its sections, training data."""
    write_json(
        directory / "system.json",
        {
            "format_version": FORMAT_VERSION,
            "stethoscope_version": __version__,
            "python": platform.python_version(),
            "system": config.to_dict(),
            "sections": [[m, s] for m, s in sorted(sections)],
            "info": info,
        },
    )


def read_system_json(directory: Path) -> tuple[dict[str, Any], SystemConfig]:
    """A model folder's system.json, checked, and the system it describes."""
    meta_path = directory / "system.json"
    if not meta_path.exists():
        raise ModelError(
            f"{directory}: not a model directory (no system.json); train one with `stethoscope fit`"
        )
    meta = read_json_object(meta_path)
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
