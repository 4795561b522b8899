"""Scoring a submission folder, with labels from development names or from an official ground truth.

Two sources of truth exist: on the development set the labels and domains are in the clip names
(``section_00_target_test_anomaly_0003_<attrs>.wav``); on the evaluation set they are in a
ground-truth folder laid out like the official evaluator's (``ground_truth_data/``,
``ground_truth_domain/`` and ``ground_truth_attributes/``, one
``ground_truth_<machine>_section_<ss>_test.csv`` each). Rows are joined on the file name; unlike the
official script, which pairs sorted rows by position, a missing or extra name is an error rather
than a silent misalignment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stethoscope.data.naming import NamingError, parse_name
from stethoscope.evaluation import result_csv
from stethoscope.evaluation.metrics import (
    SCHEMA_KEYS,
    EvaluationError,
    SectionMetrics,
    arithmetic_mean,
    evaluate_section,
    floored_hmean,
    official_score,
    official_score_ci95,
)
from stethoscope.evaluation.submission import (
    SectionKey,
    SectionRows,
    read_csv_rows,
    read_submission_dir,
    read_value_csv,
    score_file_name,
)
from stethoscope.state_io import write_json as _write_json

GROUND_TRUTH_FILE_RE = re.compile(
    r"^ground_truth_(?P<machine>.+)_section_(?P<section>\d{2})_test\.csv$"
)
_TABLE_COLUMNS = (
    ("AUC-s", "auc", "source"),
    ("AUC-t", "auc", "target"),
    ("pAUC", "pauc", ""),
    ("P-s", "precision", "source"),
    ("P-t", "precision", "target"),
    ("R-s", "recall", "source"),
    ("R-t", "recall", "target"),
    ("F1-s", "f1", "source"),
    ("F1-t", "f1", "target"),
)


@dataclass(frozen=True)
class GroundTruthSection:
    """Hidden labels of one machine type and section of an evaluation set."""

    names: list[str]  # evaluation names, section_00_0000.wav
    labels: np.ndarray  # 0 normal, 1 anomaly
    domains: np.ndarray  # 0 source, 1 target
    dev_to_eval: dict[str, str]  # development-style name (with .wav) -> evaluation name


def _read_codes(path: Path, what: str) -> dict[str, int]:
    names, values = read_value_csv(path)
    bad = [n for n, v in zip(names, values) if v not in (0.0, 1.0)]
    if bad:
        raise EvaluationError(f"{path}: {what} must be 0 or 1; not so for {', '.join(bad[:5])}")
    return {n: int(v) for n, v in zip(names, values)}


def load_ground_truth(folder: str | Path) -> dict[SectionKey, GroundTruthSection]:
    """Read an official-style ground-truth folder; ``ground_truth_attributes/`` is optional."""
    folder = Path(folder)
    data_dir = folder / "ground_truth_data"
    if not data_dir.is_dir():
        raise EvaluationError(f"{folder}: no ground_truth_data/ folder")
    result: dict[SectionKey, GroundTruthSection] = {}
    for path in sorted(data_dir.iterdir()):
        m = GROUND_TRUTH_FILE_RE.match(path.name)
        if not m:
            continue
        domain_path = folder / "ground_truth_domain" / path.name
        if not domain_path.is_file():
            raise EvaluationError(f"{domain_path}: missing (needed for machine {m['machine']})")
        labels = _read_codes(path, "labels")
        domains = _read_codes(domain_path, "domains")
        if set(labels) != set(domains):
            odd = sorted(set(labels) ^ set(domains))
            raise EvaluationError(
                f"{path.name}: data and domain files list different clips: {', '.join(odd[:5])}"
            )
        dev_to_eval: dict[str, str] = {}
        attributes_path = folder / "ground_truth_attributes" / path.name
        if attributes_path.is_file():
            eval_names, dev_names = _read_name_pairs(attributes_path)
            dev_to_eval = {f"{dev}.wav": ev for ev, dev in zip(eval_names, dev_names)}
        names = sorted(labels)
        result[(m["machine"], m["section"])] = GroundTruthSection(
            names=names,
            labels=np.array([labels[n] for n in names], dtype=np.int64),
            domains=np.array([domains[n] for n in names], dtype=np.int64),
            dev_to_eval=dev_to_eval,
        )
    if not result:
        raise EvaluationError(f"{data_dir}: no ground_truth_<machine>_section_<ss>_test.csv files")
    return result


def _read_name_pairs(path: Path) -> tuple[list[str], list[str]]:
    rows = [r for r in read_csv_rows(path) if r and any(c.strip() for c in r)]
    if any(len(r) < 2 for r in rows):
        raise EvaluationError(f"{path}: expected rows 'section_XX_XXXX.wav,<development name>'")
    return [r[0].strip() for r in rows], [r[1].strip() for r in rows]


def _labels_from_names(
    names: list[str], key: SectionKey, context: str
) -> tuple[list[str], list[str]]:
    labels, domains = [], []
    for name in names:
        try:
            parsed = parse_name(name)
        except NamingError as exc:
            raise EvaluationError(f"{context}: {exc}") from None
        if parsed.label not in ("normal", "anomaly") or parsed.domain is None:
            raise EvaluationError(
                f"{context}: {name} carries no label or domain; pass the ground-truth folder"
            )
        if parsed.section != key[1]:
            raise EvaluationError(
                f"{context}: {name} belongs to section {parsed.section}, not {key[1]}"
            )
        labels.append(parsed.label)
        domains.append(parsed.domain)
    return labels, domains


def _few(names: set[str] | list[str]) -> str:
    ordered = sorted(names)
    return ", ".join(ordered[:5]) + (f" (+{len(ordered) - 5} more)" if len(ordered) > 5 else "")


def _join_ground_truth(rows: SectionRows, truth: GroundTruthSection, context: str) -> SectionRows:
    """Rename development-style names as the official evaluator does, then align rows to the truth."""
    names, scores, decisions = rows
    renamed = [truth.dev_to_eval.get(n, n) for n in names]
    if len(set(renamed)) != len(renamed):
        raise EvaluationError(
            f"{context}: a clip appears under both its evaluation and its development name"
        )
    position = {n: i for i, n in enumerate(renamed)}
    missing = set(truth.names) - set(position)
    extra = set(position) - set(truth.names)
    if missing or extra:
        parts = (
            [f"missing {len(missing)} clip(s) of the ground truth: {_few(missing)}"]
            if missing
            else []
        ) + ([f"{len(extra)} clip(s) not in the ground truth: {_few(extra)}"] if extra else [])
        raise EvaluationError(f"{context}: " + "; ".join(parts))
    order = [position[n] for n in truth.names]
    return list(truth.names), scores[order], decisions[order]


@dataclass
class EvaluationResult:
    """Metrics of one system: per machine type and section, the official score and notes."""

    official_score: float
    machines: dict[str, dict[str, SectionMetrics]]
    notes: list[str] = field(default_factory=list)
    pooled_labels: np.ndarray | None = field(default=None, repr=False)  # all clips, for ci95
    pooled_scores: np.ndarray | None = field(default=None, repr=False)
    _ci95: float | None = field(default=None, init=False, repr=False)

    def official_score_ci95(self) -> float | None:
        """The official "official score ci95" (jackknife over pooled clips); None without clip data."""
        if self._ci95 is None and self.pooled_labels is not None and self.pooled_scores is not None:
            self._ci95 = official_score_ci95(self.pooled_labels, self.pooled_scores)
        return self._ci95

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "official_score": float(self.official_score),
            "machines": {
                machine: {section: m.to_dict() for section, m in sections.items()}
                for machine, sections in self.machines.items()
            },
        }

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> EvaluationResult:
        """Rebuild from ``to_json_dict`` output (``auc_all`` and clip data are not in the schema)."""
        machines = {
            machine: {
                section: SectionMetrics(auc_all=None, **{k: values[k] for k in SCHEMA_KEYS})
                for section, values in sections.items()
            }
            for machine, sections in data["machines"].items()
        }
        return cls(official_score=float(data["official_score"]), machines=machines)

    def write_json(self, path: str | Path) -> Path:
        _write_json(path, self.to_json_dict())
        return Path(path)

    def write_result_csv(self, path: str | Path, ci95: bool = True) -> Path:
        """The official ``<system>_result.csv``; ``ci95=False`` skips the jackknife row (O(N^2))."""
        return result_csv.write_result_csv(
            path, self.machines, self.official_score, self.official_score_ci95() if ci95 else None
        )

    def format_table(self) -> str:
        """Plain-text table in percent: one row per machine and section, means, official score.

        Notes are not included; callers print ``notes`` themselves."""
        rows: list[tuple[str, list[float | None]]] = []
        for machine, sections in self.machines.items():
            for section, m in sections.items():
                label = machine if len(sections) == 1 else f"{machine} {section}"
                rows.append((label, [m.get(metric, dom) for _, metric, dom in _TABLE_COLUMNS]))
        columns = list(zip(*(values for _, values in rows))) if rows else []
        rows.append(("arithmetic mean", [arithmetic_mean(c) for c in columns]))
        rows.append(("harmonic mean", [floored_hmean(c) for c in columns]))
        width = max(len(label) for label, _ in rows)
        header = f"{'machine':<{width}}" + "".join(f"{name:>8}" for name, _, _ in _TABLE_COLUMNS)
        lines = [header, "-" * len(header)]
        for i, (label, values) in enumerate(rows):
            if i == len(rows) - 2:
                lines.append("-" * len(header))
            cells = "".join(f"{'-':>8}" if v is None else f"{100 * v:8.2f}" for v in values)
            lines.append(f"{label:<{width}}{cells}")
        lines.append(
            f"official score (harmonic mean of AUC-s, AUC-t, pAUC): {100 * self.official_score:.2f} %"
        )
        return "\n".join(lines)


def evaluate_sections(
    submission: Mapping[SectionKey, SectionRows],
    ground_truth: str | Path | None = None,
    *,
    origin: str = "submission",
) -> EvaluationResult:
    """Score in-memory submission rows; ``origin`` (e.g. the folder) is named in error messages."""
    notes: list[str] = []
    truth = load_ground_truth(ground_truth) if ground_truth is not None else None
    if truth is not None:
        absent = [k for k in sorted(truth) if k not in submission]
        if absent:
            raise EvaluationError(
                f"{origin}: no submission for "
                + ", ".join(f"{m} section {s} ({score_file_name(m, s)})" for m, s in absent)
            )
        ignored = sorted(set(submission) - set(truth))
        if ignored:
            notes.append(
                "ignored (not in the ground truth): "
                + ", ".join(f"{m} section {s}" for m, s in ignored)
            )
        keys = sorted(truth)
    else:
        keys = sorted(submission)
    if not keys:
        raise EvaluationError(f"{origin}: nothing to evaluate")

    machines: dict[str, dict[str, SectionMetrics]] = {}
    pooled_labels, pooled_scores = [], []
    for key in sorted(keys):
        machine, section = key
        context = (
            f"{origin}: machine {machine} section {section} ({score_file_name(machine, section)})"
        )
        names, scores, decisions = submission[key]
        scores = np.asarray(scores, dtype=np.float64)
        decisions = np.asarray(decisions)
        if truth is not None:
            names, scores, decisions = _join_ground_truth(
                (list(names), scores, decisions), truth[key], context
            )
            labels: Any = truth[key].labels
            domains: Any = truth[key].domains
        else:
            order = np.argsort(np.asarray(names, dtype=object), kind="stable")
            names = [names[i] for i in order]
            scores, decisions = scores[order], decisions[order]
            labels, domains = _labels_from_names(names, key, context)
        metrics = evaluate_section(names, scores, decisions, labels, domains, context=context)
        machines.setdefault(machine, {})[section] = metrics
        notes.extend(metrics.notes)
        pooled_labels.append(
            np.array([1 if v in (1, "anomaly") else 0 for v in labels], dtype=np.int64)
        )
        pooled_scores.append(scores)

    every = [m for sections in machines.values() for m in sections.values()]
    n_values = sum(v is not None for m in every for v in (m.auc_source, m.auc_target, m.pauc))
    if n_values < 3 * len(every):
        notes.append(
            f"official score: harmonic mean over the {n_values} existing AUC-s/AUC-t/pAUC values "
            f"of {3 * len(every)} (domains without normal clips left out)"
        )
    return EvaluationResult(
        official_score=official_score(every),
        machines=machines,
        notes=notes,
        pooled_labels=np.concatenate(pooled_labels),
        pooled_scores=np.concatenate(pooled_scores),
    )


def evaluate_scores_dir(
    scores_dir: str | Path,
    ground_truth: str | Path | None = None,
    sections: Iterable[SectionKey] | None = None,
) -> EvaluationResult:
    """Score a folder of official submission CSVs, labels from dev names or a ground-truth folder;
    only ``sections`` where given (a run evaluates exactly what it wrote)."""
    scores_dir = Path(scores_dir)
    rows = read_submission_dir(scores_dir, sections)
    return evaluate_sections(rows, ground_truth, origin=str(scores_dir))


__all__ = [
    "EvaluationResult",
    "GroundTruthSection",
    "evaluate_scores_dir",
    "evaluate_sections",
    "load_ground_truth",
]
