"""Catalog of the clips of a dataset root in the DCASE Task 2 layout.

``ROOT/{dev_data,eval_data}/raw/<machine>/{train,test,supplemental}/*.wav`` with an optional
``attributes_00.csv`` per machine. Files that do not fit are reported as :class:`DataIssue` (or stop
the scan, if the user asked for that), so one stray file never hides the rest of a dataset.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stethoscope.data.clip import Clip
from stethoscope.data.naming import NamingError, parse_name
from stethoscope.errors import StethoscopeError

log = logging.getLogger(__name__)

SPLITS = ("train", "test", "supplemental")
DATASETS = {"dev_data": "dev", "eval_data": "eval"}
OnError = Literal["skip", "stop"]


class DataError(StethoscopeError, RuntimeError):
    """A dataset problem the user asked to stop on, or a root with no clips at all."""


@dataclass(frozen=True)
class DataIssue:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Catalog:
    root: Path
    clips: list[Clip]
    issues: list[DataIssue] = field(default_factory=list)
    notices: list[DataIssue] = field(default_factory=list)
    attribute_tables: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def scan(
        cls, root: str | Path, on_error: OnError = "skip", machines: Iterable[str] | None = None
    ) -> Catalog:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: dataset root does not exist or is not a folder")
        wanted = set(machines) if machines else None
        issues: list[DataIssue] = []
        notices: list[DataIssue] = []
        clips: list[Clip] = []
        tables: dict[str, dict[str, dict[str, str]]] = {}

        def report(path: Path, reason: str) -> None:
            issue = DataIssue(path, reason)
            if on_error == "stop":
                raise DataError(str(issue))
            log.warning("%s", issue)
            issues.append(issue)

        def notice(path: Path, reason: str) -> None:
            log.info("%s: %s", path, reason)
            notices.append(DataIssue(path, reason))

        machine_dirs = list(_machine_dirs(root))
        if not machine_dirs:
            raise DataError(
                f"{root}: no machine folders found (expected {{dev_data,eval_data}}/raw/<machine>/"
                "{train,test})"
            )
        for dataset, mdir in machine_dirs:
            machine = mdir.name
            if wanted is not None and machine not in wanted:
                continue
            tables[machine] = _read_attributes(mdir, report, notice)
            for split in SPLITS:
                sdir = mdir / split
                if not sdir.is_dir():
                    continue
                for path in sorted(sdir.iterdir()):
                    if path.name.startswith(".") or path.is_dir():
                        continue
                    if path.suffix.lower() != ".wav":
                        report(path, "not a .wav file, ignored")
                        continue
                    try:
                        path.stat()  # a broken link or a symlink loop: named here, not later
                    except OSError as exc:
                        report(path, f"cannot read file ({exc.strerror or exc})")
                        continue
                    try:
                        parsed = parse_name(path.name)
                    except NamingError as exc:
                        report(path, str(exc).split(": ", 1)[1])
                        continue
                    if parsed.split not in (None, split):
                        report(
                            path, f"name says split '{parsed.split}' but the file is in '{split}/'"
                        )
                        continue
                    if split == "train" and parsed.label == "anomaly":
                        report(path, "anomalous clip in train/: training must be normal only")
                        continue
                    clips.append(
                        Clip(
                            path=path,
                            machine=machine,
                            section=parsed.section,
                            split=split,
                            domain=parsed.domain,
                            label=parsed.label,
                            index=parsed.index,
                            attribute_string=parsed.attribute_string,
                            dataset=dataset,
                            edition=parsed.edition,
                        )
                    )
        if wanted is not None:
            missing = wanted - {c.machine for c in clips}
            if missing:
                raise DataError(f"{root}: no clips for machine type(s) {sorted(missing)}")
        if not clips:
            raise DataError(f"{root}: no usable clips found")
        return cls(root=root, clips=clips, issues=issues, notices=notices, attribute_tables=tables)

    # ------------------------------------------------------------------ queries
    def select(
        self,
        *,
        machine: str | None = None,
        split: str | None = None,
        section: str | None = None,
        domain: str | None = None,
        dataset: str | None = None,
    ) -> list[Clip]:
        return [
            c
            for c in self.clips
            if (machine is None or c.machine == machine)
            and (split is None or c.split == split)
            and (section is None or c.section == section)
            and (domain is None or c.domain == domain)
            and (dataset is None or c.dataset == dataset)
        ]

    def machines(self) -> list[str]:
        return sorted({c.machine for c in self.clips})

    def sections(self, machine: str) -> list[str]:
        return sorted({c.section for c in self.clips if c.machine == machine})

    def counts(self) -> Counter:
        """(machine, split, domain, label) -> number of clips."""
        return Counter((c.machine, c.split, c.domain, c.label) for c in self.clips)

    def summary(self) -> str:
        lines = []
        for m in self.machines():
            parts = []
            for split in SPLITS:
                n = len(self.select(machine=m, split=split))
                if n:
                    parts.append(f"{split} {n}")
            lines.append(f"{m}: " + ", ".join(parts))
        if self.issues:
            lines.append(f"{len(self.issues)} file(s) skipped")
        return "\n".join(lines)


def _machine_dirs(root: Path) -> Iterable[tuple[str, Path]]:
    """Machine folders under a root, accepting the root itself, a ``raw`` folder or one machine."""
    found = False
    for sub, dataset in DATASETS.items():
        raw = root / sub / "raw"
        if raw.is_dir():
            for mdir in sorted(p for p in raw.iterdir() if p.is_dir()):
                found = True
                yield dataset, mdir
    if found:
        return
    candidates = (
        [root]
        if any((root / s).is_dir() for s in SPLITS)
        else sorted(p for p in root.iterdir() if p.is_dir())
    )
    for mdir in candidates:
        if any((mdir / s).is_dir() for s in SPLITS):
            yield "dev", mdir


def _read_attributes(mdir: Path, report, notice) -> dict[str, dict[str, str]]:
    """attributes_00.csv -> {file name: {key: value}}; a missing file is reported, not fatal."""
    files = sorted(mdir.glob("attributes_*.csv"))
    if not files:
        if (mdir / "train").is_dir():
            notice(
                mdir / "attributes_00.csv",
                "attribute file missing; attributes are taken from the file names",
            )
        return {}
    table: dict[str, dict[str, str]] = {}
    for f in files:
        try:
            with f.open(newline="") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError) as exc:
            report(f, f"unreadable attribute file ({exc})")
            continue
        if not rows:
            report(f, "empty attribute file")
            continue
        for row in rows[1:]:
            if not row:
                continue
            name = Path(row[0]).name
            vals = row[1:]
            pairs = {vals[i]: vals[i + 1] for i in range(0, len(vals) - 1, 2) if vals[i]}
            table[name] = pairs
    return table
