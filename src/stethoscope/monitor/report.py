"""A monitor's database as one self-contained HTML page: score timeline, alerts, unscored files.

The page follows the run report (:mod:`stethoscope.report.html`): inline CSS, the figure as a
data URI, nothing fetched. It is written atomically, and only over a file that is such a page
(it carries :data:`GENERATOR`), so a mistyped ``--out`` never destroys someone's document.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stethoscope.errors import StethoscopeError
from stethoscope.monitor.store import AlertRow, MonitorStore, Recording
from stethoscope.report.html import CSS, data_uri
from stethoscope.state_io import atomic_write_text

GENERATOR = '<meta name="generator" content="stethoscope monitor report">'
#: unscored files listed by name (the rest are counted)
MAX_LISTED = 100

Stream = tuple[str, str, str]  # watch, machine, section


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def timeline_png(rows: Sequence[Recording], alerts: Sequence[AlertRow], title: str) -> bytes:
    """Scores in the order they were taken against the threshold; alerts as red lines; for the
    DtMM rule also the stream's KL(state || baseline), which is what its alerts compare."""
    scored = [r for r in rows if r.error is None and r.score is not None]
    x = np.arange(1, len(scored) + 1)
    score = np.array([r.score for r in scored], dtype=float)
    thr = np.array([r.threshold for r in scored], dtype=float)
    above = np.array([bool(r.decision) for r in scored])
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x[~above], score[~above], s=12, c="tab:blue", label="clip score")
    ax.scatter(x[above], score[above], s=14, c="tab:red", label="clip above threshold")
    ax.step(x, thr, where="mid", c="black", lw=1, ls="--", label="threshold")
    if any(r.rule == "dtmm" for r in scored):
        kl = np.array([r.rule_value if r.rule == "dtmm" else np.nan for r in scored], dtype=float)
        ax.plot(x, kl, c="tab:purple", lw=1.3, label="stream KL (state || baseline)")
    index = {r.id: i + 1 for i, r in enumerate(scored)}
    for k, a in enumerate(alerts):
        if a.recording_id in index:
            ax.axvline(index[a.recording_id], c="red", lw=1.6, alpha=0.8,
                       label="alert" if k == 0 else None)  # fmt: skip
    for i in range(1, len(scored)):
        if scored[i].model_id != scored[i - 1].model_id:
            ax.axvline(i + 0.5, c="gray", ls=":", lw=1)
    values = np.concatenate([score, thr])
    values = values[np.isfinite(values)]
    if len(values) and values.min() > 0 and values.max() / values.min() > 30:
        ax.set_yscale("log")
    ax.set_xlabel("clip, in the order scored")
    ax.set_ylabel("anomaly score")
    ax.set_title(title, fontsize=10)
    fig.legend(fontsize=7.5, loc="outside lower center", frameon=False, ncols=5)
    ax.grid(alpha=0.3)
    return _png(fig)


def _streams(rows: Sequence[Recording]) -> dict[Stream, list[Recording]]:
    out: dict[Stream, list[Recording]] = {}
    for r in rows:
        out.setdefault((r.watch, r.machine, r.section), []).append(r)
    return out


def _table(head: Sequence[str], body: Sequence[Sequence[str]], numeric: set[int]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    trs = []
    for row in body:
        tds = "".join(
            f'<td class="num">{escape(c)}</td>' if i in numeric else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        trs.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(trs)}</tbody></table>"


def render_report(store: MonitorStore, title: str = "Stethoscope monitor") -> str:
    rows, alerts = store.recordings(), store.alerts()
    streams = _streams(rows)
    failed = [r for r in rows if r.error is not None]
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8">{GENERATOR}',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Database: {escape(str(store.path.resolve()))}</p>',
        f"<p><strong>{len(rows) - len(failed)}</strong> recordings scored, "
        f"<strong>{len(alerts)}</strong> alert(s), <strong>{len(failed)}</strong> file(s) "
        "could not be scored.</p>",
    ]
    if not rows:
        parts.append("<p>No recordings yet.</p>")
    summary = []
    for (watch, machine, section), rs in streams.items():
        ok = [r for r in rs if r.error is None]
        n_alerts = sum(
            1 for a in alerts if (a.watch, a.machine, a.section) == (watch, machine, section)
        )
        summary.append([
            watch, machine, section, ", ".join(dict.fromkeys(r.model_id for r in rs)),
            str(len(ok)), str(sum(1 for r in ok if r.decision)), str(n_alerts),
            str(len(rs) - len(ok)), rs[0].scored_at, rs[-1].scored_at,
        ])  # fmt: skip
    if summary:
        head = ["folder", "machine", "section", "model", "scored", "above threshold", "alerts",
                "could not be scored", "first", "last"]  # fmt: skip
        parts += ["<h2>Streams</h2>", _table(head, summary, {4, 5, 6, 7})]
    for (watch, machine, section), rs in streams.items():
        mine = [a for a in alerts if (a.watch, a.machine, a.section) == (watch, machine, section)]
        label = f"{machine} section {section} ({watch})"
        parts += [
            f"<h2>Timeline: {escape(label)}</h2>",
            f'<figure><img src="{data_uri(timeline_png(rs, mine, label))}" alt="score timeline">'
            "<figcaption>Each dot is one recording's score, in the order scored; the dashed line "
            "is the model's threshold, red lines mark alerts (the rule going from quiet to "
            "alerting), dotted grey lines a change of model.</figcaption></figure>",
        ]
    parts.append("<h2>Alerts</h2>")
    if alerts:
        body = [
            [a.raised_at, f"{a.machine} {a.section}", a.rule, a.file, f"{a.value:.4g}",
             f"{a.threshold:.4g}", a.message]
            for a in alerts
        ]  # fmt: skip
        head = ["raised", "machine", "rule", "file", "value", "threshold", "message"]
        parts.append(_table(head, body, {4, 5}))
    else:
        parts.append("<p>No alerts.</p>")
    parts.append(f"<h2>Files that could not be scored: {len(failed)}</h2>")
    if failed:
        body = [[r.scored_at, r.path, r.error or ""] for r in failed[:MAX_LISTED]]
        parts.append(_table(["when", "file", "reason"], body, set()))
        if len(failed) > MAX_LISTED:
            parts.append(f"<p>... and {len(failed) - MAX_LISTED} more.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def is_monitor_report(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return GENERATOR.encode("utf-8") in head


def write_report(db: str | Path, out: str | Path) -> Path:
    """Draw ``db`` into ``out``; an existing ``out`` is replaced only if it is a monitor report."""
    out = Path(out)
    if out.exists() and (out.is_dir() or not is_monitor_report(out)):
        raise StethoscopeError(
            f"{out} exists and is not a Stethoscope monitor report: not overwritten (give "
            "another --out)"
        )
    store = MonitorStore(db, read_only=True)
    try:
        html = render_report(store)
    finally:
        store.close()
    atomic_write_text(out, html)
    return out
