"""Score-level fusion of systems (SPEC 5.7): e.g. the AE-MAHALA baseline with a CNN back end.

Per machine type and section, each member's score is standardised by the mean and standard
deviation of its own training scores (its ``threshold_scores``: held out where the back end allows,
so a member whose in-sample scores run low is not favoured), and the fused score is the mean of the
standardised member scores. The decision threshold is fitted, by the fusion's own rule, on the
fused training scores of the clips every member could score. Members are trained as the systems
they are; a saved fusion holds them in ``members/<name>/`` and scores new clips on its own.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stethoscope.data.catalog import OnError
from stethoscope.data.clip import Clip
from stethoscope.decision.base import THRESHOLDS
from stethoscope.pipeline.features import features_for, load_features
from stethoscope.pipeline.fit import section_fit_data
from stethoscope.pipeline.sections import (
    FusionSection,
    check_names,
    fuse_members,
    load_fusion_section,
    save_section_state,
)
from stethoscope.pipeline.system_model import FORMAT_VERSION, SystemModel, write_system_json
from stethoscope.progress import Progress
from stethoscope.systems import SystemConfig

__all__ = ["FORMAT_VERSION", "FusionModel", "FusionSection", "fit_fusion", "is_fusion_meta"]

Results = dict[tuple[str, str], tuple[list[Clip], np.ndarray, np.ndarray]]


@dataclass
class FusionModel:
    config: SystemConfig
    members: dict[str, SystemModel]
    sections: dict[tuple[str, str], FusionSection] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    #: a fusion has no front end of its own (no embedding map in reports)
    frontend: None = None

    def machines(self) -> list[str]:
        return sorted({m for m, _ in self.sections})

    def describe_training_data(self) -> str:
        return next(iter(self.members.values())).describe_training_data()

    def score_clips(
        self,
        clips: list[Clip],
        *,
        cache_dir: Path | None = None,
        device: str = "auto",
        on_error: OnError = "skip",
        progress: Progress | None = None,
        keep_inputs: dict | None = None,
    ) -> tuple[Results, list[tuple[Path, str]]]:
        """Each member scores the clips; a clip any member could not read is left out."""
        kept, feats, failures = features_for(
            self.feature_needs(), clips, cache_dir=cache_dir, device=device, on_error=on_error,
            progress=progress,
        )  # fmt: skip
        return self.score_features(kept, feats), failures

    def feature_needs(self) -> list[tuple[str, str]]:
        """What its members read of a clip: (feature extractor, channel), each once."""
        return list(dict.fromkeys(n for m in self.members.values() for n in m.feature_needs()))

    def score_features(
        self,
        clips: list[Clip],
        features: dict[tuple[str, str], list[np.ndarray]],
        keep_inputs: dict | None = None,
    ) -> Results:
        """Each member scores the clips from their features; the fused scores per section."""
        return fuse_members(list(self.members.values()), self.sections, clips, features)

    def forget(self) -> None:
        for member in self.members.values():
            member.forget()

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        for name, member in self.members.items():
            target = directory / "members" / name
            if target.exists():
                shutil.rmtree(target)
            member.save(target)
        for (machine, section), fs in self.sections.items():
            meta = {"threshold": fs.threshold.get_state(), "n_train": fs.n_train,
                    "members": list(self.members)}  # fmt: skip
            arrays = {"means": fs.means, "stds": fs.stds}
            save_section_state(directory / "backends", machine, section, arrays, meta)
        write_system_json(directory, self.config, self.sections, self.info)

    @classmethod
    def load(cls, directory: Path, config: SystemConfig, meta: dict, device: str) -> FusionModel:

        members = {
            name: SystemModel.load(directory / "members" / name, device) for name in config.members
        }
        sections = {}
        for machine, section in meta["sections"]:
            check_names(machine, section, directory / "system.json")
            sections[(machine, section)] = load_fusion_section(
                directory / "backends", machine, section, len(members)
            )
        return cls(config=config, members=members, sections=sections, info=meta.get("info", {}))


def fit_fusion(
    cfg: SystemConfig,
    members: dict[str, SystemModel],
    clips: list[Clip],
    *,
    cache_dir: Path | None,
    device: str,
    on_error: OnError,
    progress: Progress | None = None,
) -> FusionModel:
    """Fuse trained member systems: per section, their training scores (as each back end's
    threshold is fitted on them) give the standardisation and the fused threshold."""
    per_member: dict[str, dict[tuple[str, str], dict[str, float]]] = {}
    for name, member in members.items():
        feats = load_features(
            clips, member.frontend.feature, cache_dir=cache_dir, device=device,
            on_error=on_error, progress=progress, channel=member.channel,
        )  # fmt: skip
        per_member[name] = {}
        for machine, section in member.sections:
            section_clips, data = section_fit_data(
                member.config, member.frontend, feats, machine, section
            )
            scores = member.sections[(machine, section)].backend.threshold_scores(data)
            per_member[name][(machine, section)] = {
                str(c.path): float(s) for c, s in zip(section_clips, scores)
            }
    model = FusionModel(config=cfg, members=members)
    keys = set.intersection(*(set(m.sections) for m in members.values()))
    for key in sorted(keys):
        tables = [per_member[name][key] for name in members]
        means = np.array([np.nanmean(list(t.values())) for t in tables])
        stds = np.array([max(float(np.nanstd(list(t.values()))), 1e-12) for t in tables])
        paths = sorted(set.intersection(*(set(t) for t in tables)))
        matrix = np.array([[t[p] for t in tables] for p in paths])
        complete = ~np.isnan(matrix).any(axis=1)
        fused = ((matrix - means) / stds).mean(axis=1)
        rule = THRESHOLDS.get(cfg.threshold.name)(**cfg.threshold.params)
        # clips some member could not score as unseen are left out of the threshold's fit
        rule.fit(fused[complete] if complete.any() else np.nanmean(matrix, axis=1))
        model.sections[key] = FusionSection(means, stds, rule, n_train=len(paths))
    # the form of pipeline.fit.trained_on for a fusion: the data; members record features, channels
    first = next(iter(members.values())).info.get("trained_on") or {}
    model.info["trained_on"] = {"data": first.get("data"), "feature": None, "channel": None}
    model.info["members"] = list(members)
    return model


def is_fusion_meta(meta: dict[str, Any]) -> bool:
    """Whether a system.json describes a fusion."""
    system = meta.get("system")
    return isinstance(system, dict) and bool(system.get("members"))
