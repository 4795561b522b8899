"""Write a run's report folder from its saved results alone (no model, no audio needed).

RUN_DIR/report/ gets table1.md, table1.csv, prf.csv, index.html and plots/*.png. Every file is
written atomically, so a report being rebuilt is never seen half-written, and rebuilding from the
same results gives the same files.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from stethoscope.report.domain import domain_rows
from stethoscope.report.html import render_html
from stethoscope.report.plots import Plot, system_plots
from stethoscope.report.tables import (
    RunResults,
    load_run,
    prf_csv,
    table1_csv,
    table1_markdown,
    table_csv,
    table_markdown,
)
from stethoscope.state_io import atomic_write_bytes, atomic_write_text, read_json

log = logging.getLogger(__name__)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def system_description(system_dir: Path) -> str:
    """One line from model/system.json: its description and the components; empty when absent."""
    path = system_dir / "model" / "system.json"
    if not path.is_file():
        return ""
    try:
        spec = read_json(path).get("system", {})
    except (OSError, ValueError):
        return ""
    parts = [spec.get("description") or ""]
    comps = []
    for role in ("frontend", "backend", "threshold"):
        comp = spec.get(role)
        if isinstance(comp, dict) and comp.get("name"):
            params = comp.get("params") or {}
            inner = ", ".join(f"{k}={v}" for k, v in params.items())
            comps.append(f"{role} {comp['name']}" + (f" ({inner})" if inner else ""))
    if comps:
        parts.append("; ".join(comps))
    return " — ".join(p for p in parts if p)


def collect_plots(res: RunResults, tsne: bool = False) -> list[Plot]:
    plots: list[Plot] = []
    for system in res.systems:
        sdir = res.run_dir / system
        if sdir.is_dir():
            try:
                plots.extend(system_plots(sdir, tsne=tsne))
            except (
                OSError,
                ValueError,
                KeyError,
            ) as exc:  # a damaged file costs its plots, not the report
                log.warning("%s: plots skipped (%s)", sdir, exc)
    return plots


def build_report(
    run_dir: str | Path, out_dir: str | Path | None = None, tsne: bool = False
) -> Path:
    """Tables, plots and the HTML page of a finished run; returns the index.html path."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    res = load_run(run_dir)
    plots = collect_plots(res, tsne=tsne)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for p in plots:
        atomic_write_bytes(plot_dir / p.file_name, p.png)
    wanted = {p.file_name for p in plots}
    for stale in plot_dir.glob("*.png"):  # plots of systems or files gone since the last build
        if stale.name not in wanted:
            stale.unlink()
    domain = domain_rows(res)
    markdown = table1_markdown(res)
    if domain.rows:
        markdown += "\n## Domain offset of the scores (%)\n\n" + table_markdown(domain)
        atomic_write_text(out / "domain_shift.csv", table_csv(domain))
    atomic_write_text(out / "table1.md", markdown)
    atomic_write_text(out / "table1.csv", table1_csv(res))
    atomic_write_text(out / "prf.csv", prf_csv(res))
    descriptions = {s: system_description(run_dir / s) for s in res.systems}
    index = out / "index.html"
    title = f"Stethoscope report: {run_dir.resolve().name}"
    atomic_write_text(index, render_html(res, plots, descriptions, title=title, domain=domain))
    return index


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(
    html_path: str | Path,
    png_path: str | Path,
    width: int = 1400,
    height: int = 2400,
    timeout: float = 90.0,
) -> bool:
    """Render the page with headless Chromium, for visual checks; False when no browser or it fails."""
    browser = find_browser()
    if browser is None:
        return False
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="stethoscope-chromium-") as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png_path}",
            f"--window-size={width},{height}",
            html_path.as_uri(),
        ]
        try:
            subprocess.run(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("screenshot failed: %s", exc)
            return False
    return png_path.is_file() and png_path.stat().st_size > 0
