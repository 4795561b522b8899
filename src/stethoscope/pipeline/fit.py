"""Training: front ends once per distinct spec, then one back end + threshold per machine and section.

Systems that share a front-end spec (ae-mse/ae-mahala; the three CNN back ends) share one trained
front end: a study trains the CNN once and fits three back ends on its embeddings.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stethoscope.backends.base import BACKENDS, FitData
from stethoscope.backends.ensemble import EnsembleBackend
from stethoscope.data.catalog import Catalog
from stethoscope.data.clip import Clip
from stethoscope.data.labels import class_labels
from stethoscope.decision.base import THRESHOLDS
from stethoscope.models.base import FRONTENDS, FrontEnd, Progress
from stethoscope.pipeline.features import FeatureSet, load_features
from stethoscope.pipeline.model_dir import SectionModel, SystemModel, _load_registries
from stethoscope.systems.config import SystemConfig

log = logging.getLogger(__name__)


@dataclass
class FitReport:
    models: dict[str, SystemModel] = field(default_factory=dict)
    failures: list[tuple[Path, str]] = field(default_factory=list)


def group_by_frontend(configs: Sequence[SystemConfig]) -> dict[str, list[SystemConfig]]:
    groups: dict[str, list[SystemConfig]] = defaultdict(list)
    for cfg in configs:
        groups[cfg.frontend.key()].append(cfg)
    return dict(groups)


def train_clips(catalog: Catalog, machines: Sequence[str] | None = None) -> list[Clip]:
    clips = catalog.select(split="train")
    if machines:
        clips = [c for c in clips if c.machine in set(machines)]
    if not clips:
        raise ValueError(f"{catalog.root}: no training clips"
                         + (f" for machine type(s) {', '.join(machines)}" if machines else ""))
    return clips


def fit_frontend(cfg: SystemConfig, feats: FeatureSet, device: str,
                 progress: Progress | None = None, work_dir: Path | None = None) -> FrontEnd:
    _load_registries()
    frontend = FRONTENDS.get(cfg.frontend.name)(cfg.frontend.params, device=device)
    frontend.fit(feats.clips, feats.features, progress=progress, work_dir=work_dir)
    return frontend


def fit_backends(cfg: SystemConfig, frontend: FrontEnd, feats: FeatureSet,
                 progress: Progress | None = None, seed: int = 0) -> SystemModel:
    """Fit the system's back end and threshold for every machine type and section."""
    _load_registries()
    model = SystemModel(config=cfg, frontend=frontend)
    keys = sorted({(c.machine, c.section) for c in feats.clips})
    backend_cls = BACKENDS.get(cfg.backend.name)
    threshold_cls = THRESHOLDS.get(cfg.threshold.name)
    for i, (machine, section) in enumerate(keys):
        idx = [j for j, c in enumerate(feats.clips) if (c.machine, c.section) == (machine, section)]
        clips = [feats.clips[j] for j in idx]
        # per section: keeps memory at one machine's residuals/embeddings
        x = frontend.transform(clips, [feats.features[j] for j in idx], cfg.backend_input)
        classes, _ = class_labels(clips)
        data = FitData(x=x, domains=np.array([c.domain or "source" for c in clips]),
                       classes=classes, seed=seed)
        n_members = int(getattr(frontend, "n_members", 1))
        if n_members > 1:  # seed ensemble: one back end per member, scores averaged
            backend = EnsembleBackend([backend_cls(**cfg.backend.params)
                                       for _ in range(n_members)]).fit(data)
        else:
            backend = backend_cls(**cfg.backend.params).fit(data)
        own = getattr(backend, "threshold_scores", None)
        train_scores = np.asarray(own) if own is not None and len(own) else backend.score(x)
        rule = threshold_cls(**cfg.threshold.params)
        rule.fit(train_scores)
        model.sections[(machine, section)] = SectionModel(backend, rule, n_train=len(clips))
        if progress:
            progress(f"{cfg.name}: back ends", i + 1, len(keys), {"machine": machine})
    return model


def fit_systems(catalog: Catalog, configs: Sequence[SystemConfig], *,
                machines: Sequence[str] | None = None, cache_dir: Path | None = None,
                device: str = "auto", on_error: str = "skip", progress: Progress | None = None,
                save_to: Callable[[SystemConfig], Path] | None = None,
                work_dir: Path | None = None) -> FitReport:
    _load_registries()
    report = FitReport()
    clips = train_clips(catalog, machines)
    for _, group in group_by_frontend(configs).items():
        lead = group[0]
        feature = FRONTENDS.get(lead.frontend.name).feature
        feats = load_features(clips, feature, cache_dir=cache_dir, device=device,
                              on_error=on_error, progress=progress)
        report.failures.extend(feats.failures)
        fe_work = (work_dir / lead.frontend.slug()) if work_dir else None
        frontend = fit_frontend(lead, feats, device, progress, fe_work)
        for cfg in group:
            model = fit_backends(cfg, frontend, feats, progress)
            model.info["failures"] = [[str(p), r] for p, r in feats.failures]
            if save_to is not None:
                model.save(save_to(cfg))
            report.models[cfg.name] = model
    return report

