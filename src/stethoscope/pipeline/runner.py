"""Study specification (flags or YAML) and the end-to-end run with its terminal summary.

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

import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from stethoscope.systems.config import SystemConfig


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
    on_error: str = "skip"
    ground_truth: Path | None = None
    overwrite: bool = False
    report: bool = True

    @classmethod
    def from_yaml(cls, path: str | Path) -> "StudySpec":
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown study keys {sorted(unknown)}; known: {sorted(known)}")
        base = Path(path).parent
        for key in ("data", "out", "cache_dir", "ground_truth"):
            if raw.get(key) is not None:
                p = Path(raw[key]).expanduser()
                raw[key] = p if p.is_absolute() else base / p
        return cls(**raw)

    def merged(self, **flags: Any) -> "StudySpec":
        """Command-line flags win over the YAML file where given."""
        given = {k: v for k, v in flags.items() if v is not None}
        spec = replace(self, **given)
        if spec.data is None or spec.out is None:
            raise ValueError("a study needs --data and --out (or data:/out: in the YAML config)")
        return spec

    def system_configs(self) -> list[SystemConfig]:
        from stethoscope.systems.catalogue import TABLE1
        from stethoscope.systems.config import get_system

        names = self.systems
        if isinstance(names, str):
            names = TABLE1 if names.strip() == "all" else [s.strip() for s in names.split(",") if s.strip()]
        out = []
        for name in names:
            cfg = get_system(name)
            cfg = cfg.with_frontend_params(**self.frontends.get(cfg.frontend.name, {}))
            if "epochs" in cfg.frontend.params:  # front ends without training ignore --epochs
                cfg = cfg.with_frontend_params(epochs=self.epochs)
            out.append(cfg)
        return out


def execute_study(spec: StudySpec, echo=print) -> "object":
    from stethoscope.pipeline.study import run_study
    from stethoscope.ui import progress_display

    from stethoscope.features.cache import default_cache_dir

    cache = spec.cache_dir if spec.cache_dir is not None else default_cache_dir()
    configs = spec.system_configs()
    t0 = time.perf_counter()
    with progress_display() as progress:
        result = run_study(Path(spec.data), Path(spec.out), configs, machines=spec.machines,
                           cache_dir=cache, device=spec.device, on_error=spec.on_error,
                           ground_truth=spec.ground_truth, overwrite=spec.overwrite,
                           progress=progress)
    wall = time.perf_counter() - t0
    report_path = None
    if spec.report:
        from stethoscope.report import build_report

        report_path = build_report(Path(spec.out))
    # plain stdout, never wrapped: tables must stay readable in logs and pipes
    print(summary_text(result, wall, report_path), flush=True)
    return result


def summary_text(result, wall: float, report_path: Path | None) -> str:
    from stethoscope.report.tables import table1_text

    lines = [table1_text(result.run_dir), ""]
    for name, oc in result.outcomes.items():
        score = f"{100 * oc.official_score:.2f}" if oc.official_score is not None else "n/a"
        lines.append(f"{name:14s} {oc.status:28s} official score {score}")
        for path, reason in oc.failures[:5]:
            lines.append(f"    skipped {path}: {reason}")
        if len(oc.failures) > 5:
            lines.append(f"    ... and {len(oc.failures) - 5} more skipped files")
    if result.catalog_issues:
        lines.append(f"{len(result.catalog_issues)} file(s) skipped while reading the dataset:")
        lines += [f"    {i}" for i in result.catalog_issues[:10]]
    lines.append(f"wall time {wall:.0f} s; outputs in {result.run_dir}")
    if report_path:
        lines.append(f"report: {report_path}")
    return "\n".join(lines)
