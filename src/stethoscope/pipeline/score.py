"""Scoring: a saved system turns test clips into official-format score and decision CSVs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stethoscope.data.catalog import Catalog, DataError, OnError
from stethoscope.data.clip import Clip
from stethoscope.errors import ModelError
from stethoscope.evaluation.submission import write_submission
from stethoscope.pipeline.fusion import FusionModel
from stethoscope.pipeline.system_model import Results, SystemModel
from stethoscope.progress import Progress

log = logging.getLogger(__name__)

#: what scores clips: a trained system, or a fusion of systems
ScoredModel = SystemModel | FusionModel


@dataclass
class ScoreReport:
    out_dir: Path
    written: list[tuple[str, str, int]] = field(default_factory=list)  # machine, section, n clips
    failures: list[tuple[Path, str]] = field(default_factory=list)
    #: test sections of the data the model has no back end for (not scored)
    skipped_machines: list[str] = field(default_factory=list)
    #: sections of the model without test clips in the data
    untested: list[str] = field(default_factory=list)
    #: (machine, section) -> (clips, scores, decisions), for reports and plots
    results: dict[tuple[str, str], tuple[list[Clip], np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )
    #: (machine, section) -> the back-end inputs the scores came from (embeddings, residuals, ...)
    inputs: dict[tuple[str, str], object] = field(default_factory=dict)


def choose_channel(model: ScoredModel, channel: str | None, force: bool = False) -> None:
    """Score on ``channel`` (None: the one the model was trained on). Another channel than the
    model's is refused unless ``force``: a model trained on the near microphone has never heard
    the far one's balance of machine and noise."""
    members = list(model.members.values()) if isinstance(model, FusionModel) else [model]
    for member in members:
        if channel is None or channel == "auto" or channel == member.trained_channel:
            member.channel_override = None
            continue
        if not force:
            raise ModelError(
                f"model '{member.config.name}' was trained on the {member.trained_channel} "
                f"channel, not {channel}; leave --channel out to score on "
                f"{member.trained_channel}, or give --force-channel to score on {channel} anyway"
            )
        member.channel_override = channel


def score_clips(
    model: ScoredModel,
    clips: Sequence[Clip],
    *,
    cache_dir: Path | None = None,
    device: str = "auto",
    on_error: OnError = "skip",
    progress: Progress | None = None,
    keep_inputs: dict | None = None,
) -> tuple[Results, list[tuple[Path, str]]]:
    """Scores and decisions per (machine, section) for clips the model has a back end for."""
    return model.score_clips(
        list(clips), cache_dir=cache_dir, device=device, on_error=on_error, progress=progress,
        keep_inputs=keep_inputs,
    )  # fmt: skip


def score_catalog(
    model: ScoredModel,
    catalog: Catalog,
    out_dir: str | Path,
    *,
    cache_dir: Path | None = None,
    device: str = "auto",
    on_error: OnError = "skip",
    progress: Progress | None = None,
) -> ScoreReport:
    """Score every test clip of the catalog's machines the model knows; write the official CSVs."""
    out_dir = Path(out_dir)
    report = ScoreReport(out_dir=out_dir)
    test = catalog.select(split="test")
    known = set(model.sections)
    usable = [c for c in test if (c.machine, c.section) in known]
    report.skipped_machines = sorted(
        {f"{c.machine} section {c.section}" for c in test if (c.machine, c.section) not in known}
    )
    for item in report.skipped_machines:
        log.warning("no fitted back end for %s in this model; its test clips are not scored", item)
    tested = {(c.machine, c.section) for c in usable}
    report.untested = [f"{m} section {s}" for m, s in sorted(known - tested)]
    if not usable:
        raise DataError(
            f"{catalog.root}: no test clips of the model's machine types "
            f"({', '.join(model.machines())})"
        )
    results, report.failures = score_clips(
        model,
        usable,
        cache_dir=cache_dir,
        device=device,
        on_error=on_error,
        progress=progress,
        keep_inputs=report.inputs,
    )
    for (machine, section), (clips, scores, decisions) in results.items():
        write_submission(out_dir, machine, section, [c.name for c in clips], scores, decisions)
        report.written.append((machine, section, len(clips)))
    report.results = results
    return report
