"""What a run writes per system after training: scores, decisions, metrics, plot material.

Layout of RUN_DIR/<system>/:
  model/            the saved system (scores new audio on its own)
  scores/           official-format anomaly_score_*.csv and decision_result_*.csv
  evaluation.json   official metrics (schema of `stethoscope evaluate --json`) of the scores written
  result.csv        the official evaluator's result table
  clip_scores.csv   per test clip: score, decision, threshold, domain, label
  embeddings.npz    2-D-plot material for embedding systems (test clips)
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stethoscope.data.catalog import Catalog, OnError
from stethoscope.evaluation import evaluate_scores_dir
from stethoscope.pipeline.features import load_features
from stethoscope.pipeline.score import ScoredModel, ScoreReport, score_catalog
from stethoscope.progress import Progress
from stethoscope.state_io import atomic_write_bytes, atomic_write_text


@dataclass
class SystemOutcome:
    name: str
    status: str  # "done" | "skipped (finished earlier)" | "scored (model reused)"
    official_score: float | None = None
    evaluation: dict | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def score_and_evaluate(
    model: ScoredModel,
    catalog: Catalog,
    sdir: Path,
    *,
    cache_dir: Path | None,
    device: str,
    on_error: OnError,
    ground_truth: Path | None,
    progress: Progress | None,
) -> SystemOutcome:
    """Score the catalog's test clips into ``sdir/scores`` (replacing what an earlier run wrote
    there) and evaluate exactly the sections written now."""
    scores_dir = sdir / "scores"
    if scores_dir.is_dir():
        shutil.rmtree(scores_dir)  # this run's own folder: CSVs of other machine sets must go
    rep = score_catalog(
        model,
        catalog,
        scores_dir,
        cache_dir=cache_dir,
        device=device,
        on_error=on_error,
        progress=progress,
    )
    write_clip_scores(sdir / "clip_scores.csv", model, rep)
    write_embeddings(sdir / "embeddings.npz", model, rep, cache_dir, device, on_error)
    written = [(machine, section) for machine, section, _ in rep.written]
    ev = evaluate_scores_dir(scores_dir, ground_truth=ground_truth, sections=written)
    ev.write_json(sdir / "evaluation.json")
    ev.write_result_csv(sdir / "result.csv")
    notes = [
        f"{item}: not scored, the model has no back end for it" for item in rep.skipped_machines
    ]
    notes += [f"{item}: no test clips in the data, not evaluated" for item in rep.untested]
    return SystemOutcome(
        model.config.name,
        "done",
        ev.official_score,
        ev.to_json_dict(),
        failures=[(str(p), r) for p, r in rep.failures],
        notes=notes,
    )


def write_clip_scores(path: Path, model: ScoredModel, rep: ScoreReport) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["machine", "section", "file_name", "domain", "label", "score", "decision", "threshold"]
    )
    for (machine, section), (clips, scores, decisions) in sorted(rep.results.items()):
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


def write_embeddings(
    path: Path,
    model: ScoredModel,
    rep: ScoreReport,
    cache_dir: Path | None,
    device: str,
    on_error: OnError,
) -> None:
    """Test-clip embeddings for the 2-D map, when the front end produces embeddings.

    Systems scored on embeddings reuse the ones scoring computed; others (e.g. DtMM's views) ask
    the front end once more for plain embeddings.
    """
    if model.frontend is None or "embedding" not in model.frontend.outputs or not rep.results:
        return
    keys = sorted(rep.results)
    clips = [c for k in keys for c in rep.results[k][0]]
    if model.config.backend_input == "embedding":
        x = np.concatenate([np.asarray(rep.inputs[k], np.float32) for k in keys])
    else:
        feats = load_features(
            clips, model.frontend.feature, cache_dir=cache_dir, device=device,
            on_error=on_error, channel=model.channel,
        )  # fmt: skip
        clips = feats.clips
        if not clips:
            return
        emb = model.frontend.transform(clips, feats.features, "embedding")
        x = np.asarray(emb, np.float32)
    buf = io.BytesIO()
    np.savez(
        buf,
        x=x,
        machine=np.array([c.machine for c in clips]),
        domain=np.array([c.domain or "" for c in clips]),
        label=np.array([c.label or "" for c in clips]),
        file_name=np.array([c.name for c in clips]),
    )
    atomic_write_bytes(path, buf.getvalue())
