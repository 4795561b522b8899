"""Training: front ends once per distinct spec, then one back end + threshold per machine and section.

Systems that share a front-end spec (ae-mse/ae-mahala; the three CNN back ends) share one trained
front end: a study trains the CNN once and fits three back ends on its embeddings. Both ways in
(`stethoscope fit` and `stethoscope run`) go through :func:`fit_group`.

Under torchrun (:mod:`stethoscope.distributed`) every rank reads the features (one process per
node fills the cache first) and trains the front end; rank 0 alone then fits the back ends, holds
the folder lock and saves: the others return with no model once the front end is trained.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stethoscope import distributed
from stethoscope.backends.base import FitData
from stethoscope.backends.factory import make_backend
from stethoscope.data.catalog import Catalog, DataError, OnError
from stethoscope.data.channels import frontend_channel, resolve_channel
from stethoscope.data.clip import Clip
from stethoscope.data.labels import class_labels
from stethoscope.decision.base import THRESHOLDS
from stethoscope.errors import ConfigError
from stethoscope.features import FEATURES
from stethoscope.models.base import FRONTENDS, FrontEnd
from stethoscope.pipeline.features import FeatureSet, load_features
from stethoscope.pipeline.folder_lock import LOCK_NAME, folder_lock
from stethoscope.pipeline.provenance import data_fingerprint
from stethoscope.pipeline.system_model import SectionModel, SystemModel, is_model_dir
from stethoscope.progress import Progress
from stethoscope.systems import SystemConfig

if TYPE_CHECKING:
    from stethoscope.pipeline.fusion import FusionModel

log = logging.getLogger(__name__)

Failures = list[tuple[Path, str]]


@dataclass
class FitReport:
    models: dict[str, SystemModel] = field(default_factory=dict)
    failures: Failures = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fusions: dict[str, FusionModel] = field(default_factory=dict)


def group_by_frontend(configs: Sequence[SystemConfig]) -> list[list[SystemConfig]]:
    """Systems grouped by identical front-end spec, in the order given."""
    groups: dict[str, list[SystemConfig]] = defaultdict(list)
    for cfg in configs:
        groups[cfg.frontend.key()].append(cfg)
    return list(groups.values())


def train_clips(catalog: Catalog, machines: Sequence[str] | None = None) -> list[Clip]:
    clips = catalog.select(split="train")
    if machines:
        clips = [c for c in clips if c.machine in set(machines)]
    if not clips:
        raise DataError(
            f"{catalog.root}: no training clips"
            + (f" for machine type(s) {', '.join(machines)}" if machines else "")
        )
    return clips


def fit_frontend(
    cfg: SystemConfig,
    feats: FeatureSet,
    device: str,
    progress: Progress | None = None,
    work_dir: Path | None = None,
) -> FrontEnd:
    frontend = FRONTENDS.get(cfg.frontend.name)(cfg.frontend.params, device=device)
    frontend.fit(feats.clips, feats.features, progress=progress, work_dir=work_dir)
    return frontend


def fit_backends(
    cfg: SystemConfig,
    frontend: FrontEnd,
    feats: FeatureSet,
    progress: Progress | None = None,
    seed: int = 0,
) -> SystemModel:
    """Fit the system's back end and threshold for every machine type and section."""
    model = SystemModel(config=cfg, frontend=frontend)
    keys = sorted({(c.machine, c.section) for c in feats.clips})
    threshold_cls = THRESHOLDS.get(cfg.threshold.name)
    for i, (machine, section) in enumerate(keys):
        clips, data = section_fit_data(cfg, frontend, feats, machine, section, seed)
        backend = make_backend(cfg.backend.name, cfg.backend.params, frontend.n_members)
        backend.fit(data)
        rule = threshold_cls(**cfg.threshold.params)
        rule.fit(backend.threshold_scores(data))
        model.sections[(machine, section)] = SectionModel(backend, rule, n_train=len(clips))
        if progress:
            progress(f"{cfg.name}: back ends", i + 1, len(keys), {"machine": machine})
    return model


def section_fit_data(
    cfg: SystemConfig,
    frontend: FrontEnd,
    feats: FeatureSet,
    machine: str,
    section: str,
    seed: int = 0,
) -> tuple[list[Clip], FitData]:
    """The training clips of one machine type and section and what the back end is fitted on
    (per section: memory stays at one machine's residuals or embeddings)."""
    idx = [j for j, c in enumerate(feats.clips) if (c.machine, c.section) == (machine, section)]
    clips = [feats.clips[j] for j in idx]
    x = frontend.transform(clips, [feats.features[j] for j in idx], cfg.backend_input)
    classes, _ = class_labels(clips)
    domains = np.array([c.domain or "source" for c in clips])
    return clips, FitData(x=x, domains=domains, classes=classes, seed=seed)


def fit_group(
    group: Sequence[SystemConfig],
    clips: Sequence[Clip],
    *,
    cache_dir: Path | None,
    device: str,
    on_error: OnError,
    progress: Progress | None,
    work_dir: Path | None,
    frontend: FrontEnd | None = None,
    trained_on: dict[str, Any] | None = None,
) -> tuple[dict[str, SystemModel], Failures, list[str]]:
    """Train the front end the systems of ``group`` share (unless given) and fit each back end.

    ``work_dir`` holds the front end's checkpoints (a rerun resumes there); ``trained_on`` (see
    :func:`trained_on`) is recorded in each model and says which channel the front end reads.
    Returns the models, the training clips that failed to load, and notes on the ones that loaded
    (channel taken, resampled, silent). Under torchrun, ranks other than 0 help train the front end
    and return no model.
    """
    feature = FRONTENDS.get(group[0].frontend.name).feature
    channel = (trained_on or {}).get("channel", "mix")
    # all ranks come here only to train a front end together (given one, rank 0 comes alone)
    with distributed.local_first() if frontend is None else contextlib.nullcontext():
        feats = load_features(
            clips, feature, cache_dir=cache_dir, device=device, on_error=on_error,
            progress=progress, channel=channel,
        )  # fmt: skip
    if not feats.clips:
        raise DataError("no usable training clips: every one of them failed to load")
    if frontend is None:
        frontend = fit_frontend(group[0], feats, device, progress, work_dir)
    notes = [f"{p}: {note}" for p, note in feats.notes]
    if not distributed.is_main():
        return {}, feats.failures, notes
    models = {}
    for cfg in group:
        model = fit_backends(cfg, frontend, feats, progress)
        model.info["train_failures"] = [[str(p), r] for p, r in feats.failures]
        model.info["trained_on"] = trained_on
        models[cfg.name] = model
    return models, feats.failures, notes


def trained_on(
    catalog: Catalog, clips: Sequence[Clip], cfg: SystemConfig, channel: str
) -> dict[str, Any]:
    """What a model of ``cfg`` trained on these clips of a study listening to ``channel`` is made
    from: the data's fingerprint, the channel its front end reads and the definition of its
    features (a new feature version means retraining)."""
    data = data_fingerprint(catalog, clips, channel).to_dict()
    if cfg.members:  # a fusion: its members record their features and channels
        return {"data": data, "feature": None, "channel": None}
    feature = FRONTENDS.get(cfg.frontend.name).feature
    own = frontend_channel(channel, cfg.frontend.params)
    key = FEATURES.get(feature)(channel=own).key()
    return {"data": data, "feature": {"name": feature, "key": key}, "channel": own}


def fit_systems(
    catalog: Catalog,
    configs: Sequence[SystemConfig],
    *,
    machines: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    device: str = "auto",
    on_error: OnError = "skip",
    progress: Progress | None = None,
    save_to: Callable[[SystemConfig], Path] | None = None,
    work_dir: Path | None = None,
    channel: str = "auto",
) -> FitReport:
    """Train ``configs`` on the catalog's training clips; each model saved where ``save_to`` says.
    ``channel``: what is heard of two-channel recordings (:mod:`stethoscope.data.channels`)."""
    report = FitReport()
    clips = train_clips(catalog, machines)
    channel = resolve_channel(channel, clips)
    for group in group_by_frontend(configs):
        fe_work = (work_dir / group[0].frontend.slug()) if work_dir else None
        models, failures, notes = fit_group(
            group,
            clips,
            cache_dir=cache_dir,
            device=device,
            on_error=on_error,
            progress=progress,
            work_dir=fe_work,
            trained_on=trained_on(catalog, clips, group[0], channel),
        )
        report.failures.extend(failures)
        report.notes += [n for n in notes if n not in report.notes]
        for name, model in models.items():
            if save_to is not None:
                model.save(save_to(model.config))
            report.models[name] = model
    return report


#: what `fit` itself writes in a model folder (an unfinished one may hold any of these)
MODEL_DIR_ENTRIES = ("system.json", "frontend", "backends", ".work", LOCK_NAME)


def fit_model_dir(
    catalog: Catalog,
    cfg: SystemConfig,
    out: Path,
    *,
    machines: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    device: str = "auto",
    on_error: OnError = "skip",
    progress: Progress | None = None,
    members: Sequence[SystemConfig] | None = None,
    channel: str = "auto",
) -> FitReport:
    """Train one system into the model folder ``out``: a new or empty folder, or one holding this
    command's unfinished training (``out/.work``), which resumes. Nothing else is written over.
    A fusion (``cfg.members``) trains its ``members`` (their configs) and holds them. Under
    torchrun rank 0 checks, locks and writes the folder; the others train and return an empty
    report."""
    out = Path(out)
    distributed.from_main(lambda: _check_model_dir(out))
    main = distributed.is_main()
    with folder_lock(out) if main else contextlib.nullcontext():
        if not cfg.members:
            return fit_systems(
                catalog,
                [cfg],
                machines=machines,
                cache_dir=cache_dir,
                device=device,
                on_error=on_error,
                progress=progress,
                save_to=lambda c: out,
                work_dir=out / ".work",
                channel=channel,
            )
        from stethoscope.pipeline.fusion import fit_fusion  # the fusion builds on this module

        rep = fit_systems(
            catalog, list(members or []), machines=machines, cache_dir=cache_dir, device=device,
            on_error=on_error, progress=progress, work_dir=out / ".work", channel=channel,
        )  # fmt: skip
        if not main:
            return rep
        trained = {m: rep.models[m] for m in cfg.members}
        fusion = fit_fusion(
            cfg, trained, train_clips(catalog, machines), cache_dir=cache_dir, device=device,
            on_error=on_error, progress=progress,
        )  # fmt: skip
        fusion.save(out)
        rep.fusions[cfg.name] = fusion
        return rep


def _check_model_dir(out: Path) -> None:
    """``out`` may receive a new model: absent, empty, or an unfinished one of `fit`."""
    if is_model_dir(out):
        raise ConfigError(f"{out} already holds a model; choose another --out")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in MODEL_DIR_ENTRIES)
        if foreign:
            raise ConfigError(
                f"{out} exists and is not a Stethoscope model folder (it holds "
                f"{', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}); "
                "choose a new or empty folder for --out"
            )
