"""A study: fit, score, decide and evaluate several systems on one dataset, resumably.

Layout of RUN_DIR:
  <system>/model/            the saved system (scores new audio on its own)
  <system>/scores/           official-format anomaly_score_*.csv and decision_result_*.csv
  <system>/evaluation.json   official metrics (schema of `stethoscope evaluate --json`)
  <system>/clip_scores.csv   per test clip: score, decision, threshold, domain, label
  <system>/embeddings.npz    2-D-plot material for embedding systems (test clips)
  summary.json               {"<system>": {"official_score": float}}
A system whose evaluation.json exists is not redone; a system whose model is saved is only scored.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stethoscope.data.catalog import Catalog, OnError
from stethoscope.errors import ConfigError
from stethoscope.evaluation import evaluate_scores_dir
from stethoscope.pipeline.features import load_features
from stethoscope.pipeline.fit import fit_group, group_by_frontend, train_clips
from stethoscope.pipeline.score import score_catalog
from stethoscope.pipeline.spec import StudySpec
from stethoscope.pipeline.system_model import SystemModel, is_model_dir
from stethoscope.progress import Progress
from stethoscope.state_io import atomic_write_text, read_json, write_json
from stethoscope.systems import SystemConfig

log = logging.getLogger(__name__)


class StudyConflict(ConfigError):
    """RUN_DIR already holds a different system under the same name."""


@dataclass
class SystemOutcome:
    name: str
    status: str  # "done" | "skipped (finished earlier)" | "scored (model reused)"
    official_score: float | None = None
    evaluation: dict | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class StudyResult:
    run_dir: Path
    outcomes: dict[str, SystemOutcome] = field(default_factory=dict)
    catalog_issues: list[str] = field(default_factory=list)


def system_dir(run_dir: Path, name: str) -> Path:
    return run_dir / name


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
) -> StudyResult:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.scan(data, on_error=on_error, machines=machines)
    result = StudyResult(run_dir=run_dir, catalog_issues=[str(i) for i in catalog.issues])
    for cfg in configs:
        _check_no_conflict(run_dir, cfg, overwrite)
    clips = train_clips(catalog, machines)
    for group in group_by_frontend(configs):
        pending = [c for c in group if not _finished(run_dir, c)]
        for c in group:
            if c not in pending:
                ev = read_json(system_dir(run_dir, c.name) / "evaluation.json")
                result.outcomes[c.name] = SystemOutcome(
                    c.name, "skipped (finished earlier)", ev.get("official_score"), ev
                )
        if not pending:
            continue
        saved = [c for c in group if is_model_dir(system_dir(run_dir, c.name) / "model")]
        to_fit = [c for c in pending if c not in saved]
        models: dict[str, SystemModel] = {}
        train_failures: list[tuple[str, str]] = []
        if to_fit:
            donor = None
            if saved:  # a system of this group was saved earlier: reuse its trained front end
                donor = SystemModel.load(
                    system_dir(run_dir, saved[0].name) / "model", device
                ).frontend
                log.info(
                    "%s: reusing the front end trained for %s",
                    group[0].frontend.name,
                    saved[0].name,
                )
            models, failures = fit_group(
                to_fit,
                clips,
                cache_dir=cache_dir,
                device=device,
                on_error=on_error,
                progress=progress,
                work_dir=run_dir / ".work" / group[0].frontend.slug(),
                frontend=donor,
            )
            train_failures = [(str(p), r) for p, r in failures]
            for name, model in models.items():
                model.save(system_dir(run_dir, name) / "model")
        for cfg in pending:
            model = models.get(cfg.name) or SystemModel.load(
                system_dir(run_dir, cfg.name) / "model", device
            )
            outcome = _score_and_evaluate(
                model, catalog, run_dir, cache_dir, device, on_error, ground_truth, progress
            )
            outcome.status = "done" if cfg.name in models else "scored (model reused)"
            outcome.failures = train_failures + outcome.failures
            result.outcomes[cfg.name] = outcome
    write_summary(run_dir)
    return result


def write_summary(run_dir: Path) -> dict:
    summary = {}
    for ev_path in sorted(run_dir.glob("*/evaluation.json")):
        summary[ev_path.parent.name] = {"official_score": read_json(ev_path)["official_score"]}
    write_json(run_dir / "summary.json", summary)
    return summary


def _finished(run_dir: Path, cfg: SystemConfig) -> bool:
    sdir = system_dir(run_dir, cfg.name)
    return (sdir / "evaluation.json").exists() and is_model_dir(sdir / "model")


def _check_no_conflict(run_dir: Path, cfg: SystemConfig, overwrite: bool) -> None:
    sys_json = system_dir(run_dir, cfg.name) / "model" / "system.json"
    if not sys_json.exists():
        return
    saved = read_json(sys_json)["system"]
    if saved == _roundtrip(cfg):
        return
    if not overwrite:
        raise StudyConflict(
            f"{sys_json.parent}: holds a '{cfg.name}' model with a different configuration; "
            "use another --out folder, or --overwrite to replace it"
        )
    import shutil

    log.warning("replacing %s (different configuration, --overwrite given)", sys_json.parent.parent)
    shutil.rmtree(sys_json.parent.parent)


def _roundtrip(cfg: SystemConfig) -> dict:
    import json

    return json.loads(json.dumps(cfg.to_dict()))


def _score_and_evaluate(
    model: SystemModel,
    catalog: Catalog,
    run_dir: Path,
    cache_dir,
    device,
    on_error,
    ground_truth,
    progress,
) -> SystemOutcome:
    sdir = system_dir(run_dir, model.config.name)
    rep = score_catalog(
        model,
        catalog,
        sdir / "scores",
        cache_dir=cache_dir,
        device=device,
        on_error=on_error,
        progress=progress,
    )
    _write_clip_scores(sdir / "clip_scores.csv", model, rep.results)
    _write_embeddings(sdir / "embeddings.npz", model, rep, cache_dir, device, on_error)
    ev = evaluate_scores_dir(sdir / "scores", ground_truth=ground_truth)
    ev.write_json(sdir / "evaluation.json")
    ev.write_result_csv(sdir / "result.csv")
    return SystemOutcome(
        model.config.name,
        "done",
        ev.official_score,
        ev.to_json_dict(),
        failures=[(str(p), r) for p, r in rep.failures],
    )


def _write_clip_scores(path: Path, model: SystemModel, results) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["machine", "section", "file_name", "domain", "label", "score", "decision", "threshold"]
    )
    for (machine, section), (clips, scores, decisions) in sorted(results.items()):
        thr = model.sections[(machine, section)].threshold.value
        for c, s, d in zip(clips, scores, decisions):
            w.writerow(
                [
                    machine,
                    section,
                    c.name,
                    c.domain or "",
                    c.label or "",
                    repr(float(s)),
                    int(d),
                    repr(float(thr)),
                ]
            )
    atomic_write_text(path, buf.getvalue())


def _write_embeddings(path: Path, model: SystemModel, rep, cache_dir, device, on_error) -> None:
    """Test-clip embeddings for the 2-D map, when the front end produces embeddings.

    Systems scored on embeddings reuse the ones scoring computed; others (e.g. DtMM's views) ask
    the front end once more for plain embeddings.
    """
    if "embedding" not in model.frontend.outputs or not rep.results:
        return
    keys = sorted(rep.results)
    clips = [c for k in keys for c in rep.results[k][0]]
    if model.config.backend_input == "embedding":
        x = np.concatenate([np.asarray(rep.inputs[k], np.float32) for k in keys])
    else:
        feats = load_features(
            clips, model.frontend.feature, cache_dir=cache_dir, device=device, on_error=on_error
        )
        clips = feats.clips
        if not clips:
            return
        x = np.asarray(model.frontend.transform(clips, feats.features, "embedding"), np.float32)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(
        tmp,
        x=x,
        machine=np.array([c.machine for c in clips]),
        domain=np.array([c.domain or "" for c in clips]),
        label=np.array([c.label or "" for c in clips]),
        file_name=np.array([c.name for c in clips]),
    )
    tmp.replace(path)


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
    with progress_display() as progress:
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
        )
    wall = time.perf_counter() - t0
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
    lines.append(f"wall time {wall:.0f} s; outputs in {result.run_dir}")
    if report_path:
        lines.append(f"report: {report_path}")
    return "\n".join(lines)
