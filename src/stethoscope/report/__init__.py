"""Report of a finished run folder: Table 1, precision/recall/F1, plots and one HTML page."""

from stethoscope.report.build import build_report, screenshot
from stethoscope.report.tables import RunResults, load_run, table1_csv, table1_markdown, table1_text

__all__ = [
    "RunResults",
    "build_report",
    "load_run",
    "screenshot",
    "table1_csv",
    "table1_markdown",
    "table1_text",
]
