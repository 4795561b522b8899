"""One self-contained HTML page per run: inline CSS, images as data URIs, no scripts or links out.

A single file can be mailed, archived next to the run or opened offline, and always shows the same
thing; that is why nothing is fetched from anywhere.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from stethoscope.report.domain import domain_rows
from stethoscope.report.plots import Plot
from stethoscope.report.tables import RunResults, Table, best_mask, pct, prf_rows, table1_rows

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1320px; padding: 0 16px; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.3em; }
.meta { color: #666; font-size: 0.9em; word-break: break-all; }
table { border-collapse: collapse; font-size: 0.88em; margin: 8px 0 4px; }
th, td { border: 1px solid #d0d0d0; padding: 3px 9px; }
th { background: #f1f3f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.grp { font-weight: 600; background: #fafafa; vertical-align: top; }
tr.hmean td { background: #f7f9ff; }
tr.official td { background: #eef3ff; font-weight: 600; border-top: 2px solid #9aa; }
tr.first td { border-top: 2px solid #bbb; }
.scores td.num { font-size: 1.05em; }
.note { background: #fbfbf4; border: 1px solid #e6e3c8; padding: 8px 14px; font-size: 0.9em; }
.note dt { font-weight: 600; }
.note dd { margin: 0 0 6px 18px; }
figure { margin: 10px 0 22px; flex: 0 1 auto; max-width: 100%; }
.figs { display: flex; flex-wrap: wrap; gap: 0 24px; align-items: flex-start; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.88em; margin-top: 4px; max-width: 640px; }
.tables { display: flex; flex-wrap: wrap; gap: 0 48px; align-items: flex-start; }
.sysdesc { color: #555; font-size: 0.9em; margin: 0 0 6px; }
"""

HOW_TO_READ = """
<div class="note"><dl>
<dt>AUC-s (source)</dt><dd>Area under the ROC curve of the source-domain normal clips against all anomalous
clips of the machine: how well the score ranks anomalies above the normals of the well-known domain.</dd>
<dt>AUC-t (target)</dt><dd>The same with the target-domain normals (the shifted conditions with few
training clips): the domain-generalisation test. "–" means the domain has no normal test clips.</dd>
<dt>pAUC</dt><dd>Partial AUC over both domains for false-positive rates up to 0.1 (McClish-standardised),
i.e. quality in the low-false-alarm range that matters in practice.</dd>
<dt>Official score</dt><dd>The harmonic mean of all AUC-s, AUC-t and pAUC values over machine types; a
single weak value pulls it down strongly. "Harmonic mean" rows give the same mean per metric.</dd>
<dt>Domain offset</dt><dd>From the test clip scores: <em>tn &gt; sn</em> is the AUC of target normals
over source normals (50 means the score has no domain offset; near 100, every target normal scores above
every source normal). <em>AUC tn|ta</em> ranks target anomalies over target normals (detection within the
target domain), <em>AUC tn|sa</em> source anomalies over target normals: an offset shows as a high
<em>tn &gt; sn</em> with a low <em>tn|sa</em>, and costs AUC-t and pAUC even when detection within each
domain is good.</dd>
<dt>P / R / F1</dt><dd>Precision, recall and F1 of the anomaly decisions (score above the system's
threshold) per domain; they depend on the threshold, the AUCs do not. Best value per row in
<strong>bold</strong> (Table 1 only). All numbers in %.</dd>
</dl></div>
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def table_html(table: Table) -> str:
    """Rows grouped by machine (rowspan); best per row in bold when the table asks for it."""
    head = "".join(f"<th>{escape(s)}</th>" for s in table.systems)
    out = [f"<table><thead><tr><th>machine</th><th>metric</th>{head}</tr></thead><tbody>"]
    spans: dict[str, int] = {}
    for row in table.rows:
        spans[row.group] = spans.get(row.group, 0) + 1
    previous = None
    for row in table.rows:
        first = row.group != previous
        cls = [row.kind] + (["first"] if first else [])
        cells = []
        if first:
            cells.append(f'<td class="grp" rowspan="{spans[row.group]}">{escape(row.group)}</td>')
        cells.append(f"<td>{escape(row.metric)}</td>")
        bold = best_mask(row.values) if table.bold_best else [False] * len(row.values)
        for v, b in zip(row.values, bold):
            text = escape(pct(v))
            cells.append(f'<td class="num">{"<strong>" + text + "</strong>" if b else text}</td>')
        out.append(f'<tr class="{" ".join(cls)}">{"".join(cells)}</tr>')
        previous = row.group
    out.append("</tbody></table>")
    return "\n".join(out)


def scores_html(res: RunResults) -> str:
    rows = "".join(
        f'<tr><td>{escape(s)}</td><td class="num">{escape(pct(res.official(s)))}</td></tr>'
        for s in res.systems
    )
    return (
        f'<table class="scores"><thead><tr><th>system</th><th>official score (%)</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def render_html(
    res: RunResults,
    plots: Sequence[Plot],
    descriptions: dict[str, str] | None = None,
    title: str = "Stethoscope report",
    domain: Table | None = None,
) -> str:
    """The whole page; ``descriptions`` (system -> one line) come from each model's system.json."""
    descriptions = descriptions or {}
    t1, prf = table1_rows(res), prf_rows(res)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Run folder: {escape(str(Path(res.run_dir).resolve()))}</p>',
        "<h2>Official score</h2>",
        scores_html(res),
        '<div class="tables"><div>',
        "<h2>Table 1: AUC-s / AUC-t / pAUC (%)</h2>",
        table_html(t1),
        "</div>",
    ]
    if prf.rows:
        parts += [
            "<div>",
            "<h2>Precision / recall / F1 per domain (%)</h2>",
            table_html(prf),
            "</div>",
        ]
    domain = domain if domain is not None else domain_rows(res)  # the caller may have it already
    if domain.rows:
        parts += ["<div>", "<h2>Domain offset of the scores (%)</h2>", table_html(domain), "</div>"]
    parts.append("</div>")
    parts += ["<h2>How to read</h2>", HOW_TO_READ]
    by_system: dict[str, list[Plot]] = {}
    for p in plots:
        by_system.setdefault(p.system, []).append(p)
    if by_system:
        parts.append("<h2>Plots per system</h2>")
    for system in [s for s in res.systems if s in by_system] + sorted(
        set(by_system) - set(res.systems)
    ):
        parts.append(f'<h3 id="{escape(system)}">{escape(system)}</h3>')
        if descriptions.get(system):
            parts.append(f'<p class="sysdesc">{escape(descriptions[system])}</p>')
        parts.append('<div class="figs">')
        for p in by_system[system]:
            parts.append(
                f'<figure><img src="{data_uri(p.png)}" alt="{escape(p.file_name)}">'
                f"<figcaption>{escape(p.caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
