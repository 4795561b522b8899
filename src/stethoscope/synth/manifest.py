"""The tables written beside the audio: ``attributes_00.csv`` per machine, ``synth_manifest.csv``.

The attribute tables are what DCASE publishes; the manifest is the ground truth it does not (fault
kind and severity, SNRs, hidden attributes and, for near-far data, the microphone geometry and the
environmental noise mix of every clip), for analysing results by cause.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from stethoscope.synth.clip import ClipJob
from stethoscope.synth.environment import EnvMix
from stethoscope.synth.machines import MachineType
from stethoscope.synth.microphones import Microphones, snrs


def write_attributes(mdir: Path, mt: MachineType, jobs: Iterable[ClipJob]) -> None:
    """attributes_00.csv in the DCASE2023+ format; hidden types list names with empty pairs."""
    rows = [j for j in jobs if j.split in ("train", "test")]
    pairs = 1 if mt.hidden else len(mt.keys)
    header = ["file_name"] + [f"d{i}{x}" for i in range(1, pairs + 1) for x in ("p", "v")]
    with (mdir / "attributes_00.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for j in rows:
            vals = ["", ""] if mt.hidden else [x for kv in j.attrs.items() for x in kv]
            w.writerow([j.relative] + vals)


MANIFEST = "synth_manifest.csv"


_COLUMNS = [
    "file_name",
    "machine",
    "split",
    "domain",
    "label",
    "anomaly",
    "severity",
    "snr_db",
    "true_attributes",
]
#: extra columns of near-far clips: the SNRs at the two microphones (machine against everything
#: else), the microphone geometry (``Microphones``) and the noise mix (``EnvMix``)
_NEAR_FAR_COLUMNS = ["channels", "near_snr_db", "far_snr_db"]
_NEAR_FAR_COLUMNS += [f"mic_{k}" for k in Microphones.__dataclass_fields__]
_NEAR_FAR_COLUMNS += [f"env_{k}" for k in EnvMix.__dataclass_fields__]


def _manifest_row(j: ClipJob) -> dict[str, str]:
    row = {
        "file_name": j.relative,
        "machine": j.machine,
        "split": j.split,
        "domain": j.domain,
        "label": j.label,
        "anomaly": j.anomaly,
        "severity": f"{j.severity:.3f}",
        "snr_db": f"{j.snr_db:.2f}" if j.split != "supplemental" else "",
        "true_attributes": "_".join(f"{k}_{v}" for k, v in j.attrs.items()),
    }
    if j.mic is None:
        return row
    row["channels"] = j.channels
    if j.split != "supplemental":
        near, far = snrs(j.mic, -j.snr_db, j.env.level_db if j.env is not None else None)
        row["near_snr_db"], row["far_snr_db"] = f"{near:.2f}", f"{far:.2f}"
    for prefix, params in (("mic", j.mic), ("env", j.env)):
        for k, v in (asdict(params) if params is not None else {}).items():
            row[f"{prefix}_{k}"] = str(v) if isinstance(v, int) else f"{v:.2f}"
    return row


def write_manifest(out: Path, jobs: list[ClipJob]) -> None:
    """Ground truth per clip; rows of machine types not regenerated in this run are kept.

    The near-far columns appear only when some clip has two channels, so a mono manifest keeps
    its DCASE2025-era columns."""
    path = out / MANIFEST
    fresh = {j.machine for j in jobs}
    kept: list[dict[str, str]] = []
    if path.exists():
        with path.open(newline="") as fh:
            kept = [r for r in csv.DictReader(fh) if r.get("machine") not in fresh]
    rows = kept + [_manifest_row(j) for j in jobs]
    columns = _COLUMNS + (_NEAR_FAR_COLUMNS if any(r.get("channels") for r in rows) else [])
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, columns, restval="", extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
