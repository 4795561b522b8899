"""One Table 1 (AUC-s / AUC-t / pAUC per machine, harmonic means, official score) over several run
folders, e.g. the same systems run on the near channel, the mix and a noise-aware channel.

    python benchmarks/table_runs.py RUN_DIR[=LABEL] ... [--systems a,b] [--csv]

Each system is shown as "<system> [LABEL]" (the folder's name without a label); --systems keeps
those systems only, in that order. Reads only the run folders' evaluation.json files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stethoscope.report.tables import RunResults, load_run, table1_rows, table_csv, table_markdown


def merged(runs: list[tuple[Path, str]], systems: list[str] | None) -> RunResults:
    """The runs' systems side by side, each name tagged with its run's label."""
    names: list[str] = []
    evaluations: dict[str, dict] = {}
    for path, label in runs:
        res = load_run(path)
        for s in systems or res.systems:
            if s in res.evaluations:
                tagged = f"{s} [{label}]" if label else s
                names.append(tagged)
                evaluations[tagged] = res.evaluations[s]
    return RunResults(Path("."), names, evaluations)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR=LABEL")
    ap.add_argument("--systems", default=None, help="comma-separated systems to keep, in order")
    ap.add_argument("--csv", action="store_true", help="CSV instead of markdown")
    args = ap.parse_args()
    runs = []
    for arg in args.runs:
        path, _, label = arg.partition("=")
        runs.append((Path(path), label or (Path(path).name if len(args.runs) > 1 else "")))
    table = table1_rows(merged(runs, args.systems.split(",") if args.systems else None))
    print(table_csv(table) if args.csv else table_markdown(table), end="")


if __name__ == "__main__":
    main()
