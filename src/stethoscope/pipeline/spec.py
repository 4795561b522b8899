"""Study specification: the `run` flags, or the same fields in a YAML file.

A YAML study config holds the same fields as the `run` flags, plus per-front-end overrides:

    data: data/synth
    out: runs/study1
    systems: all                # or [ae-mse, cnn-ds]
    machines: [fan, valve]      # optional
    frontends:                  # optional parameter overrides per front end
      dualcnn: {epochs: 5}
      ae: {epochs: 50}
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from stethoscope.data.catalog import OnError
from stethoscope.errors import ConfigError
from stethoscope.systems import SystemConfig


@dataclass
class StudySpec:
    data: Path | None = None
    out: Path | None = None
    systems: list[str] | str = "all"
    epochs: int | None = None
    frontends: dict[str, dict[str, Any]] = field(default_factory=dict)
    machines: list[str] | None = None
    cache_dir: Path | None = None
    device: str = "auto"
    on_error: OnError = "skip"
    ground_truth: Path | None = None
    overwrite: bool = False
    report: bool = True
    #: what is heard of two-channel recordings: auto, near, far, mix, both (data/channels.py)
    channel: str = "auto"

    @classmethod
    def from_yaml(cls, path: str | Path) -> StudySpec:
        try:
            with open(path, encoding="utf-8") as fh:
                raw = yaml.safe_load(fh) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the study config ({exc})") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a study config is a mapping of keys to values")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(
                f"{path}: unknown study keys {sorted(unknown)}; known: {sorted(known)}"
            )
        base = Path(path).parent
        for key in ("data", "out", "cache_dir", "ground_truth"):
            if raw.get(key) is not None:
                p = Path(raw[key]).expanduser()
                raw[key] = p if p.is_absolute() else base / p
        return cls(**raw)

    def merged(self, **flags: Any) -> StudySpec:
        """Command-line flags win over the YAML file where given."""
        given = {k: v for k, v in flags.items() if v is not None}
        spec = replace(self, **given)
        if spec.data is None or spec.out is None:
            raise ConfigError("a study needs --data and --out (or data:/out: in the YAML config)")
        return spec

    def system_configs(self) -> list[SystemConfig]:
        """The systems of the study with this study's front-end settings; the members of a fusion
        are added (before it) where the study does not list them."""
        from stethoscope.systems import get_system, resolve_systems

        def configured(cfg: SystemConfig) -> SystemConfig:
            if cfg.members:
                return cfg
            cfg = cfg.with_frontend_params(**self.frontends.get(cfg.frontend.name, {}))
            if "epochs" in cfg.frontend.params:  # front ends without training ignore --epochs
                cfg = cfg.with_frontend_params(epochs=self.epochs)
            return cfg

        out: list[SystemConfig] = []
        for cfg in resolve_systems(self.systems):
            for member in cfg.members:
                if member not in [c.name for c in out]:
                    out.append(configured(get_system(member)))
            if cfg.name not in [c.name for c in out]:
                out.append(configured(cfg))
        return out
