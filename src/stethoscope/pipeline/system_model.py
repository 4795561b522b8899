"""A fitted system on disk: everything needed to score new clips, and nothing that needs pickle.

Layout of MODEL_DIR:
  system.json                      system config, class names, machines/sections, versions
  frontend/                        front-end weights (safetensors) + config (JSON)
  backends/<machine>_section_<ss>.{safetensors,json}   back-end state + threshold
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from stethoscope import __version__
from stethoscope.backends.base import BACKENDS, Backend
from stethoscope.decision.base import ThresholdRule
from stethoscope.errors import ModelError
from stethoscope.models.base import FRONTENDS, FrontEnd
from stethoscope.state_io import load_state, read_json, save_state, write_json
from stethoscope.systems import SystemConfig

FORMAT_VERSION = 1


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

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.frontend.save(directory / "frontend")
        for (machine, section), sm in self.sections.items():
            arrays, meta = sm.backend.get_state()
            meta = {
                "backend": sm.backend.name,
                "state": meta,
                "threshold": sm.threshold.get_state(),
                "n_train": sm.n_train,
            }
            save_state(directory / "backends", f"{machine}_section_{section}", arrays, meta)
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
        meta_path = directory / "system.json"
        if not meta_path.exists():
            raise ModelError(
                f"{directory}: not a model directory (no system.json); "
                "train one with `stethoscope fit`"
            )
        meta = read_json(meta_path)
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ModelError(
                f"{directory}: model format {meta['format_version']} is newer than "
                f"this stethoscope ({FORMAT_VERSION}); upgrade stethoscope"
            )
        config = SystemConfig.from_dict(meta["system"])
        frontend = FRONTENDS.get(config.frontend.name).load(directory / "frontend", device=device)
        sections: dict[tuple[str, str], SectionModel] = {}
        for machine, section in meta["sections"]:
            arrays, bmeta = load_state(directory / "backends", f"{machine}_section_{section}")
            backend_cls = BACKENDS.get(bmeta.get("backend", config.backend.name))
            sections[(machine, section)] = SectionModel(
                backend=backend_cls.from_state(arrays, bmeta["state"]),
                threshold=ThresholdRule.from_state(bmeta["threshold"]),
                n_train=int(bmeta.get("n_train", 0)),
            )
        return cls(config=config, frontend=frontend, sections=sections, info=meta.get("info", {}))


def is_model_dir(directory: str | Path) -> bool:
    return (Path(directory) / "system.json").exists()
