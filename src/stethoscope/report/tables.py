"""Result tables of a finished run folder: Table 1 (AUC-s / AUC-t / pAUC) and precision/recall/F1.

Everything here reads only ``summary.json`` and ``<system>/evaluation.json``, so tables can be
rebuilt long after the models are gone. A table is kept as plain rows of fractions (``None`` where a
metric does not exist, e.g. no target-domain normals); the renderers turn them into percent with one
decimal.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stethoscope.evaluation.metrics import floored_hmean
from stethoscope.state_io import read_json

#: Table 1 metrics: (column label, evaluation.json key).
TABLE1_METRICS = (("AUC-s", "auc_source"), ("AUC-t", "auc_target"), ("pAUC", "pauc"))
PRF_METRICS = (
    ("P-s", "precision_source"),
    ("P-t", "precision_target"),
    ("R-s", "recall_source"),
    ("R-t", "recall_target"),
    ("F1-s", "f1_source"),
    ("F1-t", "f1_target"),
)
MISSING = "–"


def order_systems(names: Iterable[str]) -> list[str]:
    """Built-in systems in catalogue order, then the rest (user-defined) alphabetically."""
    from stethoscope.systems import system_names  # deferred: tables alone need no torch

    wanted = set(names)
    known = [n for n in system_names() if n in wanted]
    return known + sorted(wanted - set(known))


@dataclass
class RunResults:
    """Metrics of every system of a run folder, as saved by the pipeline."""

    run_dir: Path
    systems: list[str]
    evaluations: dict[str, dict]  # system -> evaluation.json (may lack "machines")
    summary: dict[str, float | None] = field(default_factory=dict)

    def sections(self) -> list[tuple[str, str]]:
        """All (machine, section) pairs of any system, machines in first-seen order then sorted."""
        seen: set[tuple[str, str]] = set()
        for ev in self.evaluations.values():
            for machine, secs in (ev.get("machines") or {}).items():
                seen.update((machine, s) for s in secs)
        return sorted(seen, key=lambda k: (k[0].lower(), k[1]))

    def machines(self) -> list[str]:
        return sorted({m for m, _ in self.sections()}, key=str.lower)

    def metric(self, system: str, machine: str, section: str, key: str) -> float | None:
        secs = (self.evaluations.get(system, {}).get("machines") or {}).get(machine) or {}
        value = (secs.get(section) or {}).get(key)
        return None if value is None else float(value)

    def official(self, system: str) -> float | None:
        value = self.evaluations.get(system, {}).get("official_score", self.summary.get(system))
        return None if value is None else float(value)

    def row_label(self, machine: str, section: str) -> str:
        """The machine alone when it has one section (DCASE2025), else "machine ss"."""
        n = sum(1 for m, _ in self.sections() if m == machine)
        return machine if n == 1 else f"{machine} {section}"


def load_run(run_dir: str | Path) -> RunResults:
    """Systems are the subfolders holding evaluation.json, plus summary-only entries."""
    run_dir = Path(run_dir)
    evaluations: dict[str, dict] = {}
    for path in sorted(run_dir.glob("*/evaluation.json")):
        evaluations[path.parent.name] = read_json(path)
    summary: dict[str, float | None] = {}
    if (run_dir / "summary.json").is_file():
        for name, entry in read_json(run_dir / "summary.json").items():
            summary[name] = entry.get("official_score") if isinstance(entry, dict) else entry
            evaluations.setdefault(name, {"official_score": summary[name]})
    return RunResults(run_dir, order_systems(evaluations), evaluations, summary)


def as_results(run: str | Path | RunResults) -> RunResults:
    return run if isinstance(run, RunResults) else load_run(run)


@dataclass
class TableRow:
    """One row: ``group`` (machine or "harmonic mean"), ``metric`` label, one value per system."""

    group: str
    metric: str
    values: list[float | None]
    kind: str = "metric"  # "metric" | "hmean" | "official"


@dataclass
class Table:
    systems: list[str]
    rows: list[TableRow]
    bold_best: bool = True


def table1_rows(run: str | Path | RunResults) -> Table:
    """Machines × {AUC-s, AUC-t, pAUC} × systems, then harmonic means and the official score."""
    res = as_results(run)
    rows = _metric_rows(res, TABLE1_METRICS)
    for label, key in TABLE1_METRICS:
        values = [
            floored_hmean(res.metric(s, m, sec, key) for m, sec in res.sections())
            for s in res.systems
        ]
        rows.append(TableRow("harmonic mean", label, values, "hmean"))
    rows.append(
        TableRow("official score", "all", [res.official(s) for s in res.systems], "official")
    )
    return Table(res.systems, rows, bold_best=True)


def prf_rows(run: str | Path | RunResults) -> Table:
    """Machines × {P, R, F1} × {source, target} × systems, from the thresholded decisions."""
    res = as_results(run)
    return Table(res.systems, _metric_rows(res, PRF_METRICS), bold_best=False)


def _metric_rows(res: RunResults, metrics: tuple[tuple[str, str], ...]) -> list[TableRow]:
    return [
        TableRow(res.row_label(m, sec), label, [res.metric(s, m, sec, key) for s in res.systems])
        for m, sec in res.sections()
        for label, key in metrics
    ]


# --- rendering -----------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    """Percent with one decimal; the dash where the metric does not exist."""
    return MISSING if value is None else f"{100 * value:.1f}"


def best_mask(values: list[float | None]) -> list[bool]:
    """Which cells hold the best value as displayed (ties all win); none when fewer than two."""
    shown = [None if v is None else round(100 * v, 1) for v in values]
    present = [v for v in shown if v is not None]
    if len(present) < 2:
        return [False] * len(values)
    top = max(present)
    return [v is not None and v == top for v in shown]


def table_markdown(table: Table) -> str:
    header = ["machine", "metric", *table.systems]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] * 2 + ["---:"] * len(table.systems)) + " |",
    ]
    for row in table.rows:
        bold = best_mask(row.values) if table.bold_best else [False] * len(row.values)
        cells = [f"**{pct(v)}**" if b else pct(v) for v, b in zip(row.values, bold)]
        lines.append("| " + " | ".join([row.group, row.metric, *cells]) + " |")
    return "\n".join(lines) + "\n"


def table_csv(table: Table) -> str:
    """machine,metric,<system>...; percent with one decimal, empty where missing."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["machine", "metric", *table.systems])
    for row in table.rows:
        w.writerow(
            [row.group, row.metric, *("" if v is None else f"{100 * v:.1f}" for v in row.values)]
        )
    return buf.getvalue()


def table1_markdown(run: str | Path | RunResults) -> str:
    """Table 1 and the precision/recall/F1 table as markdown, best system per row in bold."""
    res = as_results(run)
    parts = ["## Table 1: AUC-s / AUC-t / pAUC (%)", "", table_markdown(table1_rows(res))]
    prf = prf_rows(res)
    if prf.rows:
        parts += ["## Precision / recall / F1 per domain (%)", "", table_markdown(prf)]
    return "\n".join(parts)


def table1_csv(run: str | Path | RunResults) -> str:
    return table_csv(table1_rows(run))


def prf_csv(run: str | Path | RunResults) -> str:
    return table_csv(prf_rows(run))


def table1_text(run: str | Path | RunResults) -> str:
    """Compact terminal table: one row per machine, cells "AUC-s / AUC-t / pAUC" per system."""
    res = as_results(run)
    if not res.systems:
        return f"{res.run_dir}: no evaluated systems"
    body: list[list[str]] = []
    for m, sec in res.sections():
        body.append(
            [res.row_label(m, sec)]
            + [
                " / ".join(pct(res.metric(s, m, sec, key)) for _, key in TABLE1_METRICS)
                for s in res.systems
            ]
        )
    hmeans = {r.metric: r.values for r in table1_rows(res).rows if r.kind == "hmean"}
    footer = [
        ["harmonic mean"]
        + [
            " / ".join(pct(hmeans[label][i]) for label, _ in TABLE1_METRICS)
            for i in range(len(res.systems))
        ],
        ["official score"] + [pct(res.official(s)) for s in res.systems],
    ]
    header = ["machine"] + res.systems
    widths = [max(len(r[i]) for r in [header, *body, *footer]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    rule = "-" * len(line(header))
    out = ["AUC-s / AUC-t / pAUC (%)", line(header), rule, *map(line, body)]
    if body:
        out.append(rule)
    out += [line(r) for r in (footer if body else footer[1:])]
    return "\n".join(out)
