"""The official submission CSVs: ``anomaly_score_<machine>_section_<ss>_test.csv`` and
``decision_result_<machine>_section_<ss>_test.csv``, rows ``file_name,value`` without a header.

These files are what the challenge organisers score, so we write exactly this layout (full float
precision, atomically so a crash never leaves half a file) and read it back with checks that the
official script lacks: duplicate names, unparsable values and score/decision files that disagree on
their clips all raise an ``EvaluationError`` naming the file.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from stethoscope.evaluation.metrics import EvaluationError
from stethoscope.state_io import atomic_write_text

SCORE_FILE_RE = re.compile(r"^anomaly_score_(?P<machine>.+)_section_(?P<section>\d{2})_test\.csv$")
DECISION_FILE_RE = re.compile(
    r"^decision_result_(?P<machine>.+)_section_(?P<section>\d{2})_test\.csv$"
)

SectionKey = tuple[str, str]  # (machine, two-digit section)
SectionRows = tuple[list[str], np.ndarray, np.ndarray]  # names, scores (float), decisions (int 0/1)


def normalise_section(section: str | int) -> str:
    """``0``, ``"0"``, ``"00"`` and ``"section_00"`` all mean section ``"00"``."""
    text = str(section)
    text = text[len("section_") :] if text.startswith("section_") else text
    if not text.isdigit() or len(text) > 2:
        raise EvaluationError(f"section must be a number of at most two digits, got {section!r}")
    return f"{int(text):02d}"


def score_file_name(machine: str, section: str | int) -> str:
    return f"anomaly_score_{machine}_section_{normalise_section(section)}_test.csv"


def decision_file_name(machine: str, section: str | int) -> str:
    return f"decision_result_{machine}_section_{normalise_section(section)}_test.csv"


def _csv_text(rows: Sequence[tuple[str, str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def write_submission(
    out_dir: str | Path,
    machine: str,
    section: str | int,
    names: Sequence[str],
    scores: Sequence[float] | np.ndarray,
    decisions: Sequence[int] | np.ndarray,
) -> tuple[Path, Path]:
    """Write the score and decision CSVs of one machine and section; returns their paths."""
    out_dir = Path(out_dir)
    score_path = out_dir / score_file_name(machine, section)
    decision_path = out_dir / decision_file_name(machine, section)
    if not (len(names) == len(scores) == len(decisions)):
        raise EvaluationError(
            f"{score_path.name}: {len(names)} names, {len(scores)} scores, {len(decisions)} decisions"
        )
    score_values = [float(v) for v in scores]
    bad = [n for n, v in zip(names, score_values) if not math.isfinite(v)]
    if bad:
        raise EvaluationError(
            f"{score_path.name}: non-finite anomaly scores for {', '.join(bad[:5])}"
        )
    decision_values = [float(v) for v in decisions]
    bad = [n for n, v in zip(names, decision_values) if v not in (0.0, 1.0)]
    if bad:
        raise EvaluationError(
            f"{decision_path.name}: decisions must be 0 or 1; not so for {', '.join(bad[:5])}"
        )
    atomic_write_text(score_path, _csv_text([(n, repr(v)) for n, v in zip(names, score_values)]))
    atomic_write_text(
        decision_path, _csv_text([(n, str(int(v))) for n, v in zip(names, decision_values)])
    )
    return score_path, decision_path


def read_csv_rows(path: str | Path) -> list[list[str]]:
    """Rows of a UTF-8 CSV file (a byte-order mark, as spreadsheet programs write, is accepted)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise EvaluationError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV"
        ) from None


def read_value_csv(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Rows ``file_name,value`` of one CSV (blank lines skipped); clear errors naming file and line."""
    path = Path(path)
    names: list[str] = []
    values: list[float] = []
    seen: set[str] = set()
    for line_no, row in enumerate(read_csv_rows(path), start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise EvaluationError(
                f"{path}: line {line_no}: expected 'file_name,value', got {row!r}"
            )
        name, raw = row[0].strip(), row[1].strip()
        try:
            value = float(raw)
        except ValueError:
            raise EvaluationError(
                f"{path}: line {line_no}: value {raw!r} is not a number"
            ) from None
        if name in seen:
            raise EvaluationError(f"{path}: line {line_no}: file name {name} appears twice")
        seen.add(name)
        names.append(name)
        values.append(value)
    if not names:
        raise EvaluationError(f"{path}: no rows")
    return names, np.asarray(values, dtype=np.float64)


def read_section_files(score_path: Path, decision_path: Path) -> SectionRows:
    """Read one score/decision pair, decisions reordered to the score file's rows."""
    names, scores = read_value_csv(score_path)
    decision_names, decision_values = read_value_csv(decision_path)
    bad = [n for n, v in zip(decision_names, decision_values) if v not in (0.0, 1.0)]
    if bad:
        raise EvaluationError(
            f"{decision_path}: decisions must be 0 or 1; not so for {', '.join(bad[:5])}"
        )
    by_name = dict(zip(decision_names, decision_values))
    missing = [n for n in names if n not in by_name]
    extra = sorted(set(by_name) - set(names))
    if missing or extra:
        raise EvaluationError(
            f"{decision_path.name} and {score_path.name} list different clips: "
            f"no decision for {', '.join(missing[:5]) or '-'}; no score for {', '.join(extra[:5]) or '-'}"
        )
    decisions = np.array([by_name[n] for n in names], dtype=np.int64)
    return names, scores, decisions


def read_submission_dir(
    directory: str | Path, sections: Iterable[SectionKey] | None = None
) -> dict[SectionKey, SectionRows]:
    """(machine, section) pairs of a submission folder -> (names, scores, decisions): all of them,
    or only ``sections`` (which must all be there; other files are then ignored)."""
    directory = Path(directory)
    wanted = None if sections is None else set(sections)
    if not directory.is_dir():
        raise EvaluationError(f"{directory}: submission folder not found")
    score_files: dict[SectionKey, Path] = {}
    decision_files: dict[SectionKey, Path] = {}
    for path in sorted(directory.iterdir()):
        m = SCORE_FILE_RE.match(path.name) or DECISION_FILE_RE.match(path.name)
        if m is None or (wanted is not None and (m["machine"], m["section"]) not in wanted):
            continue
        files = score_files if path.name.startswith("anomaly_score_") else decision_files
        files[(m["machine"], m["section"])] = path
    if not score_files:
        raise EvaluationError(
            f"{directory}: no anomaly_score_<machine>_section_<ss>_test.csv files"
        )
    if wanted is not None and wanted - set(score_files):
        missing = ", ".join(score_file_name(*k) for k in sorted(wanted - set(score_files)))
        raise EvaluationError(f"{directory}: missing {missing}")
    orphans = sorted(set(decision_files) - set(score_files))
    if orphans:
        raise EvaluationError(
            f"{directory}: decision files without an anomaly score file: "
            + ", ".join(decision_files[k].name for k in orphans)
        )
    result: dict[SectionKey, SectionRows] = {}
    for key in sorted(score_files):
        if key not in decision_files:
            raise EvaluationError(
                f"{directory}: {score_files[key].name} has no {decision_file_name(*key)} beside it"
            )
        result[key] = read_section_files(score_files[key], decision_files[key])
    return result


__all__ = [
    "DECISION_FILE_RE",
    "SCORE_FILE_RE",
    "decision_file_name",
    "normalise_section",
    "read_section_files",
    "read_submission_dir",
    "read_value_csv",
    "score_file_name",
    "write_submission",
]
