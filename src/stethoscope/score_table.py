"""The scores of plain recordings as one CSV: a row per file, with what produced the score."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from stethoscope.detector import Result
from stethoscope.errors import StethoscopeError
from stethoscope.state_io import atomic_write_text

COLUMNS = ("file", "score", "decision", "threshold", "system", "model_id", "machine", "section",
           "domain", "notes")  # fmt: skip


def write_scores_table(path: str | Path, results: Sequence[Result]) -> None:
    """Write ``results`` to ``path`` atomically. An existing file is replaced only if it is such a
    table itself: anything else there was made by someone and is kept (the write is refused)."""
    path = Path(path)
    if path.is_dir():
        raise StethoscopeError(f"{path}: is a folder; --out takes a CSV file name here")
    if path.exists() and not _is_scores_table(path):
        raise StethoscopeError(
            f"{path}: exists and is not a Stethoscope scores table; choose another --out"
        )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in results:
        writer.writerow([r.file, repr(r.score), r.decision, repr(r.threshold), r.system,
                         r.model_id, r.machine, r.section, r.domain or "", "; ".join(r.notes)])  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())


def read_scores_table(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _is_scores_table(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().strip() == ",".join(COLUMNS)
    except (OSError, UnicodeDecodeError):
        return False
