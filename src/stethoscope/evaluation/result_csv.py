"""The official evaluator's ``<system>_result.csv`` layout, reproduced row for row.

Participants and organisers compare systems with this file, so ours must be interchangeable with the
official one: per machine type a block of per-section metrics followed by arithmetic, harmonic,
source harmonic and target harmonic means; then the same means over all machine types, sections and
domains; then the official score and its "ci95" row. Means follow the official pooling: the AUC
column pools [AUC-s..., AUC-t...], the pAUC column [pAUC..., pAUC...], precision/recall/F1 their
source and target values. Floats are written at full precision (``repr``); a metric that is ``None``
(a domain without normal clips) is an empty cell and is left out of the means.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from stethoscope.evaluation.metrics import SectionMetrics, arithmetic_mean, floored_hmean
from stethoscope.state_io import atomic_write_text

SECTION_HEADER = [
    "section",
    "AUC (all)",
    "AUC (source)",
    "AUC (target)",
    "pAUC",
    "precision (source)",
    "precision (target)",
    "recall (source)",
    "recall (target)",
    "F1 score (source)",
    "F1 score (target)",
]
MEANS_HEADER = ["", "", "AUC", "pAUC", "precision", "recall", "F1 score"]
_MEAN_METRICS = ("auc", "pauc", "precision", "recall", "f1")
_OVER_ALL = " over all machine types, sections, and domains"

Machines = Mapping[str, Mapping[str, SectionMetrics]]


def _cell(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _section_row(section: str, m: SectionMetrics) -> list[str]:
    values = [
        m.auc_all,
        m.auc_source,
        m.auc_target,
        m.pauc,
        m.precision_source,
        m.precision_target,
        m.recall_source,
        m.recall_target,
        m.f1_source,
        m.f1_target,
    ]
    return [section] + [_cell(v) for v in values]


def _mean_rows(sections: Sequence[SectionMetrics], suffix: str) -> list[list[str]]:
    """The four mean rows over the given sections (one machine type, or all of them)."""

    def row(label: str, mean: Callable, domains: tuple[str, ...]) -> list[str]:
        cells = []
        for metric in _MEAN_METRICS:
            pooled = [m.get(metric, d) for d in domains for m in sections]
            cells.append(_cell(mean(pooled)))
        return [label + suffix, ""] + cells

    return [
        MEANS_HEADER,
        row("arithmetic mean", arithmetic_mean, ("source", "target")),
        row("harmonic mean", floored_hmean, ("source", "target")),
        row("source harmonic mean", floored_hmean, ("source",)),
        row("target harmonic mean", floored_hmean, ("target",)),
        [],
    ]


def result_csv_rows(
    machines: Machines, official_score: float, ci95: float | None
) -> list[list[str]]:
    """All rows of the result CSV; the ci95 row is left out when ``ci95`` is None."""
    rows: list[list[str]] = []
    every_section: list[SectionMetrics] = []
    for machine, sections in machines.items():
        rows.append([machine])
        rows.append(SECTION_HEADER)
        rows.extend(_section_row(section, m) for section, m in sections.items())
        rows.extend(_mean_rows(list(sections.values()), ""))
        every_section.extend(sections.values())
    rows.extend(_mean_rows(every_section, _OVER_ALL))
    rows.append(["official score", "", _cell(official_score)])
    if ci95 is not None:
        rows.append(["official score ci95", "", _cell(ci95)])
    rows.append([])
    return rows


def format_result_csv(machines: Machines, official_score: float, ci95: float | None) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(
        result_csv_rows(machines, official_score, ci95)
    )
    return buffer.getvalue()


def write_result_csv(
    path: str | Path, machines: Machines, official_score: float, ci95: float | None
) -> Path:
    """Write the result CSV atomically; returns its path."""
    atomic_write_text(path, format_result_csv(machines, official_score, ci95))
    return Path(path)


__all__ = ["format_result_csv", "result_csv_rows", "write_result_csv"]
