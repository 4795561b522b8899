"""A study: fit, score, decide and evaluate several systems on one dataset, resumably.

RUN_DIR holds ``run.json`` (what the run was made from, :mod:`.run_folder`), one folder per system
(:mod:`.run_outputs`), ``summary.json`` ({"<system>": {"official_score": float}}), ``notes.json``
(what the run noticed about the data) and ``report/``. A system whose evaluation exists is not
redone; a system whose model is saved is only scored; a front end interrupted in training resumes
from its last epoch in ``RUN_DIR/.work``. One process at a time writes a run folder.

Under torchrun (:mod:`stethoscope.distributed`) rank 0 alone locks, opens and writes the run folder,
scores and reports; it decides for each group of systems whether its front end must be trained,
and all ranks train those front ends together. The other ranks write nothing and wait for the next
training (or the end) while rank 0 works.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stethoscope import distributed
from stethoscope.data.catalog import Catalog, OnError
from stethoscope.data.channels import resolve_channel
from stethoscope.errors import ConfigError
from stethoscope.pipeline.fit import fit_group, group_by_frontend, train_clips, trained_on
from stethoscope.pipeline.folder_lock import folder_lock
from stethoscope.pipeline.fusion import fit_fusion
from stethoscope.pipeline.provenance import data_fingerprint
from stethoscope.pipeline.run_folder import RunFolder, StudyConflict
from stethoscope.pipeline.run_outputs import SystemOutcome, score_and_evaluate
from stethoscope.pipeline.spec import StudySpec
from stethoscope.pipeline.system_model import SystemModel, is_model_dir, load_model
from stethoscope.progress import Progress
from stethoscope.state_io import read_json, write_json
from stethoscope.systems import SystemConfig

log = logging.getLogger(__name__)

__all__ = ["StudyConflict", "StudyResult", "execute_study", "run_study"]


@dataclass
class StudyResult:
    run_dir: Path
    outcomes: dict[str, SystemOutcome] = field(default_factory=dict)
    catalog_issues: list[str] = field(default_factory=list)
    #: what the run noticed about the data (missing attributes, resampled or down-mixed files...)
    notes: list[str] = field(default_factory=list)


def run_study(
    data: Path,
    run_dir: Path,
    configs: Sequence[SystemConfig],
    *,
    machines: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    device: str = "auto",
    on_error: OnError = "skip",
    ground_truth: Path | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    channel: str = "auto",
) -> StudyResult:
    catalog = Catalog.scan(data, on_error=on_error, machines=machines)
    clips = train_clips(catalog, machines)
    channel = resolve_channel(channel, clips)
    main = distributed.is_main()
    with folder_lock(Path(run_dir)) if main else contextlib.nullcontext():

        def open_folder() -> RunFolder:
            fingerprint = data_fingerprint(catalog, clips, channel)
            folder = RunFolder.open(Path(run_dir), fingerprint, overwrite)
            for cfg in configs:
                _check_saved(folder, cfg, trained_on(catalog, clips, cfg, channel), overwrite)
            return folder

        folder = distributed.from_main(open_folder)
        result = StudyResult(run_dir=folder.path, catalog_issues=[str(i) for i in catalog.issues])
        result.notes += [str(n) for n in catalog.notices]
        fusions = [c for c in configs if c.members]
        for group in group_by_frontend([c for c in configs if not c.members]):
            _run_group(
                folder,
                group,
                catalog,
                clips,
                result,
                channel=channel,
                cache_dir=cache_dir,
                device=device,
                on_error=on_error,
                ground_truth=ground_truth,
                progress=progress,
            )
        if not main:  # the trainings are done; what follows is rank 0's
            return result
        for cfg in fusions:
            _run_fusion(
                folder, cfg, catalog, clips, result, cache_dir=cache_dir, device=device,
                on_error=on_error, ground_truth=ground_truth, progress=progress,
            )  # fmt: skip
        for outcome in result.outcomes.values():
            result.notes += [n for n in outcome.notes if n not in result.notes]
        write_json(folder.path / "notes.json", result.notes)
        write_summary(folder.path)
    return result


def _run_group(
    folder: RunFolder,
    group: list[SystemConfig],
    catalog: Catalog,
    clips: list,
    result: StudyResult,
    *,
    cache_dir: Path | None,
    device: str,
    on_error: OnError,
    ground_truth: Path | None,
    progress: Progress | None,
    channel: str,
) -> None:
    """Fit what is missing of the systems sharing one front end, then score and evaluate them.
    Under torchrun rank 0 decides, every rank trains the front end if it must be trained, and
    rank 0 alone does the rest."""

    def plan() -> tuple[list[str], list[str]]:
        pending = [c.name for c in group if not _finished(folder, c)]
        saved = [c.name for c in group if is_model_dir(folder.system_dir(c.name) / "model")]
        return pending, saved

    pending_names, saved_names = distributed.from_main(plan)
    pending = [c for c in group if c.name in pending_names]
    saved = [c for c in group if c.name in saved_names]
    to_fit = [c for c in pending if c not in saved]
    if not distributed.is_main():
        if to_fit and not saved:  # a front end to train: help train it, write nothing
            fit_group(
                to_fit, clips, cache_dir=cache_dir, device=device, on_error=on_error,
                progress=None, work_dir=folder.path / ".work" / group[0].frontend.slug(),
                trained_on=trained_on(catalog, clips, group[0], channel),
            )  # fmt: skip
        return
    for c in group:
        if c not in pending:
            ev = read_json(folder.system_dir(c.name) / "evaluation.json")
            result.outcomes[c.name] = SystemOutcome(
                c.name, "skipped (finished earlier)", ev.get("official_score"), ev
            )
    if not pending:
        return
    models: dict[str, SystemModel] = {}
    train_failures: list[tuple[str, str]] = []
    if to_fit:
        donor = None
        if saved:  # a system of this group was saved earlier: reuse its trained front end
            donor = SystemModel.load(folder.system_dir(saved[0].name) / "model", device).frontend
            log.info(
                "%s: reusing the front end trained for %s", group[0].frontend.name, saved[0].name
            )
        models, failures, notes = fit_group(
            to_fit,
            clips,
            cache_dir=cache_dir,
            device=device,
            on_error=on_error,
            progress=progress,
            work_dir=folder.path / ".work" / group[0].frontend.slug(),
            frontend=donor,
            trained_on=trained_on(catalog, clips, group[0], channel),
        )
        train_failures = [(str(p), r) for p, r in failures]
        result.notes += [n for n in notes if n not in result.notes]
        for name, trained in models.items():
            trained.save(folder.system_dir(name) / "model")
    for cfg in pending:
        model = models.get(cfg.name) or SystemModel.load(
            folder.system_dir(cfg.name) / "model", device
        )
        outcome = score_and_evaluate(
            model,
            catalog,
            folder.system_dir(cfg.name),
            cache_dir=cache_dir,
            device=device,
            on_error=on_error,
            ground_truth=ground_truth,
            progress=progress,
        )
        outcome.status = "done" if cfg.name in models else "scored (model reused)"
        outcome.failures = train_failures + outcome.failures
        result.outcomes[cfg.name] = outcome


def _run_fusion(
    folder: RunFolder,
    cfg: SystemConfig,
    catalog: Catalog,
    clips: list,
    result: StudyResult,
    *,
    cache_dir: Path | None,
    device: str,
    on_error: OnError,
    ground_truth: Path | None,
    progress: Progress | None,
) -> None:
    """Fuse the member systems this run trained (or saved earlier), then score and evaluate."""
    sdir = folder.system_dir(cfg.name)
    if _finished(folder, cfg):
        ev = read_json(sdir / "evaluation.json")
        result.outcomes[cfg.name] = SystemOutcome(
            cfg.name, "skipped (finished earlier)", ev.get("official_score"), ev
        )
        return
    if is_model_dir(sdir / "model"):
        model = load_model(sdir / "model", device)
        status = "scored (model reused)"
    else:
        members = {m: SystemModel.load(folder.system_dir(m) / "model", device) for m in cfg.members}
        model = fit_fusion(
            cfg, members, clips, cache_dir=cache_dir, device=device, on_error=on_error,
            progress=progress,
        )  # fmt: skip
        model.save(sdir / "model")
        status = "done"
    outcome = score_and_evaluate(
        model, catalog, sdir, cache_dir=cache_dir, device=device, on_error=on_error,
        ground_truth=ground_truth, progress=progress,
    )  # fmt: skip
    outcome.status = status
    result.outcomes[cfg.name] = outcome


def write_summary(run_dir: Path) -> dict:
    summary = {}
    for ev_path in sorted(run_dir.glob("*/evaluation.json")):
        summary[ev_path.parent.name] = {"official_score": read_json(ev_path)["official_score"]}
    write_json(run_dir / "summary.json", summary)
    return summary


def _finished(folder: RunFolder, cfg: SystemConfig) -> bool:
    sdir = folder.system_dir(cfg.name)
    return (sdir / "evaluation.json").exists() and is_model_dir(sdir / "model")


def _same_making(cfg: SystemConfig, saved: dict, made_from: dict) -> bool:
    """A fusion is checked on its data only: its members are checked on their own, so whatever a
    fusion's record says of features or channel is not compared."""
    if cfg.members:
        return saved.get("data") == made_from.get("data")
    return saved == made_from


def _check_saved(folder: RunFolder, cfg: SystemConfig, made_from: dict, overwrite: bool) -> None:
    """A system saved in the folder earlier must have the same configuration and features."""
    sys_json = folder.system_dir(cfg.name) / "model" / "system.json"
    if not sys_json.exists():
        return
    saved = read_json(sys_json)
    problem = None
    if saved.get("system") != json.loads(json.dumps(cfg.to_dict())):
        problem = "a different configuration"
    elif not _same_making(cfg, (saved.get("info") or {}).get("trained_on") or {}, made_from):
        problem = "other data or other feature settings"
    if problem is None:
        return
    if not overwrite:
        raise StudyConflict(
            f"{sys_json.parent}: holds a '{cfg.name}' model made with {problem}; use another "
            "--out folder, or --overwrite to replace it"
        )
    log.warning("replacing %s (%s, --overwrite given)", sys_json.parent.parent, problem)
    folder.remove_system(cfg.name)


def execute_study(spec: StudySpec) -> StudyResult:
    """Run a study as the CLI does: progress display, report, summary table on stdout."""
    from stethoscope.features.cache import default_cache_dir
    from stethoscope.ui import progress_display

    if spec.data is None or spec.out is None:
        raise ConfigError("a study needs a data root and an output folder (--data, --out)")
    data, out = Path(spec.data), Path(spec.out)
    cache = spec.cache_dir if spec.cache_dir is not None else default_cache_dir()
    configs = spec.system_configs()
    t0 = time.perf_counter()
    main = distributed.is_main()
    with progress_display(enabled=main) as progress:
        result = run_study(
            data,
            out,
            configs,
            machines=spec.machines,
            cache_dir=cache,
            device=spec.device,
            on_error=spec.on_error,
            ground_truth=spec.ground_truth,
            overwrite=spec.overwrite,
            progress=progress,
            channel=spec.channel,
        )
    wall = time.perf_counter() - t0
    if not main:
        return result
    report_path = None
    if spec.report:
        from stethoscope.report import build_report

        report_path = build_report(out)
    # plain stdout, never wrapped: tables must stay readable in logs and pipes
    print(summary_text(result, wall, report_path), flush=True)
    return result


def summary_text(result: StudyResult, wall: float, report_path: Path | None) -> str:
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
    if result.notes:
        grouped = group_notes(result.notes)
        lines.append(f"notes on the data ({len(result.notes)}, all in notes.json):")
        lines += [f"    {n}" for n in grouped[:10]]
        if len(grouped) > 10:
            lines.append(f"    ... and {len(grouped) - 10} more kinds")
    lines.append(f"wall time {wall:.0f} s; outputs in {result.run_dir}")
    if report_path:
        lines.append(f"report: {report_path}")
    return "\n".join(lines)


def group_notes(notes: list[str]) -> list[str]:
    """Notes of the form "<file>: <what>" counted by what was noticed ("1000 files: 2 channels:
    channel 0 (near) used, e.g. <file>"), so one setting applied to a whole dataset reads as one
    line; other notes are kept as they are."""
    by_what: dict[str, list[str]] = {}
    for note in notes:
        file, sep, what = note.partition(": ")
        if sep and Path(file).suffix.lower() in (".wav", ".flac"):
            by_what.setdefault(what, []).append(file)
        else:
            by_what.setdefault(note, [])
    lines = []
    for what, files in by_what.items():
        if len(files) > 1:
            lines.append(f"{len(files)} files: {what} (e.g. {files[0]})")
        elif files:
            lines.append(f"{files[0]}: {what}")
        else:
            lines.append(what)
    return lines
