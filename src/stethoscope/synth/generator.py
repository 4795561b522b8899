"""Write a synthetic dataset in the DCASE2025 Task 2 development layout.

``OUT/dev_data/raw/<machine>/{train,test,supplemental}/`` plus ``attributes_00.csv`` per machine and
a ``synth_manifest.csv`` with the ground truth a real dataset would not give (fault kind, severity,
SNR, hidden attributes). Every clip draws from its own seed, derived from (seed, machine, split,
domain, label, index), so the bytes do not depend on the number of worker processes.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import shutil
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stethoscope import SAMPLE_RATE
from stethoscope.audio import write_wav
from stethoscope.data.naming import dev_name
from stethoscope.errors import ConfigError, StethoscopeError
from stethoscope.progress import Progress
from stethoscope.synth import anomalies
from stethoscope.synth import sources as S
from stethoscope.synth.background import background
from stethoscope.synth.machines import DEFAULT_MACHINES, MACHINES, MachineType
from stethoscope.synth.scene import render

#: Clip counts per machine at scale 1.0 (the DCASE2025 development set) and the floors at any scale.
FULL_COUNTS = {"train_source": 990, "train_target": 10, "test": 50, "supplemental": 100}
MIN_COUNTS = {"train_source": 10, "train_target": 2, "test": 3, "supplemental": 2}
TARGET_SNR_DB = (-6.0, -3.0)  # the target site is noisier: shifts of the low and high SNR ends
_CODES = {
    "train": 1,
    "test": 2,
    "supplemental": 3,
    "source": 1,
    "target": 2,
    "normal": 1,
    "anomaly": 2,
    "clean": 3,
    "noise": 4,
}


class DatasetExists(StethoscopeError, FileExistsError):
    """The output folder already holds a dataset and overwriting was not allowed."""


@dataclass
class ClipJob:
    """Everything needed to render one clip, decided up front in the parent process."""

    path: Path
    machine: str
    split: str
    domain: str
    label: str  # normal | anomaly | clean | noise
    index: int
    seed: int
    n: int
    attrs: dict[str, str] = field(default_factory=dict)
    anomaly: str = ""
    severity: float = 0.0
    snr_db: float = float("nan")
    gain_db: float = 0.0

    @property
    def relative(self) -> str:
        return f"{self.machine}/{self.split}/{self.path.name}"


def clip_counts(scale: float = 1.0, target_train: int | None = None) -> dict[str, int]:
    """Per-machine counts at ``scale``, never below the floors that keep every metric defined.

    ``target_train`` fixes the number of target-domain training clips whatever the scale (the
    first-shot setting of DCASE has 10 of them, and a small demo should keep that)."""
    if not 0 < scale <= 10:
        raise ConfigError(
            f"scale must be in (0, 10] (file names hold 4-digit indices), got {scale}"
        )
    counts = {k: max(MIN_COUNTS[k], int(round(v * scale))) for k, v in FULL_COUNTS.items()}
    if target_train is not None:
        if not 1 <= target_train <= 9999:
            raise ConfigError(f"target_train must be in [1, 9999], got {target_train}")
        counts["train_target"] = int(target_train)
    return counts


def _rng(
    seed: int, machine: str, split: str, domain: str, label: str, index: int, stream: int
) -> np.random.Generator:
    key = (
        zlib.crc32(machine.encode()),
        _CODES[split],
        _CODES[domain],
        _CODES[label],
        index,
        stream,
    )
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def plan_machine(
    out: Path,
    mt: MachineType,
    seed: int,
    scale: float,
    duration: float,
    sr: int = SAMPLE_RATE,
    target_train: int | None = None,
) -> list[ClipJob]:
    """All clips of one machine type, with attributes, faults and SNRs drawn."""
    counts = clip_counts(scale, target_train)
    n = int(round(duration * sr))
    root = out / "dev_data" / "raw" / mt.name
    cells: list[tuple[str, str, str, int]] = [
        ("train", "source", "normal", counts["train_source"]),
        ("train", "target", "normal", counts["train_target"]),
    ]
    cells += [
        ("test", d, lab, counts["test"])
        for d in ("source", "target")
        for lab in ("normal", "anomaly")
    ]
    n_clean = (counts["supplemental"] + 1) // 2
    cells += [
        ("supplemental", "source", "clean", n_clean),
        ("supplemental", "source", "noise", counts["supplemental"] - n_clean),
    ]
    jobs = []
    for split, domain, label, count in cells:
        for i in range(count):
            rng = _rng(seed, mt.name, split, domain, label, i, 0)
            job = ClipJob(
                path=root,
                machine=mt.name,
                split=split,
                domain=domain,
                label=label,
                index=i,
                seed=seed,
                n=n,
                attrs=mt.sample_attributes(rng, domain),
            )
            lo, hi = mt.snr_db
            if domain == "target":
                lo, hi = lo + TARGET_SNR_DB[0], hi + TARGET_SNR_DB[1]
            job.snr_db = float(rng.uniform(lo, hi))
            job.gain_db = float(rng.normal(0.0, 1.0))
            if label == "anomaly":
                job.anomaly = list(mt.anomalies)[i % len(mt.anomalies)]
                job.severity = float(rng.uniform(0.0, 1.0))
            if split == "supplemental":
                attr_string = mt.attribute_string(job.attrs) if label == "clean" else "noAttribute"
                name = f"section_00_{domain}_supplemental_{label}_{i:04d}_{attr_string}.wav"
            else:
                name = dev_name("00", domain, split, label, i, mt.attribute_string(job.attrs))
            job.path = root / split / name
            jobs.append(job)
    return jobs


def synthesise(job: ClipJob, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The waveform of one planned clip (float32, peak below full scale)."""
    mt = MACHINES[job.machine]
    rng = _rng(job.seed, job.machine, job.split, job.domain, job.label, job.index, 1)
    if job.label == "noise":
        sound = background(job.machine, job.domain, job.n, sr, rng)
    else:
        recipe = mt.build(job.attrs, rng)
        if job.anomaly:
            recipe = anomalies.apply(
                job.anomaly, recipe, rng, job.severity, mt.anomalies[job.anomaly]
            )
        sound = render(recipe, job.n, sr, rng)
        sound = sound.scaled(1.0 / np.sqrt(sound.power()))
        if job.label != "clean":
            snr = S.db(job.snr_db)
            bg = background(job.machine, job.domain, job.n, sr, rng)
            sound = (sound.scaled(snr) + bg).scaled(1.0 / np.sqrt(1.0 + snr * snr))
    y = sound.audio(rng)
    y = y * np.float32(0.05 * S.db(job.gain_db))
    peak = float(np.max(np.abs(y)))
    return y * np.float32(0.95 / peak) if peak > 0.95 else y


def _work(job: ClipJob) -> str:
    try:
        write_wav(job.path, synthesise(job))
    except Exception as exc:  # name the file: a bare worker traceback does not
        raise RuntimeError(f"{job.path}: could not write synthetic clip ({exc})") from exc
    return job.relative


def _write_attributes(mdir: Path, mt: MachineType, jobs: Iterable[ClipJob]) -> None:
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


def _write_manifest(out: Path, jobs: list[ClipJob]) -> None:
    """Ground truth per clip; rows of machine types not regenerated in this run are kept."""
    path = out / MANIFEST
    fresh = {j.machine for j in jobs}
    kept: list[list[str]] = []
    if path.exists():
        with path.open(newline="") as fh:
            kept = [r for r in list(csv.reader(fh))[1:] if len(r) > 1 and r[1] not in fresh]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(
            [
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
        )
        w.writerows(kept)
        for j in jobs:
            w.writerow(
                [
                    j.relative,
                    j.machine,
                    j.split,
                    j.domain,
                    j.label,
                    j.anomaly,
                    f"{j.severity:.3f}",
                    f"{j.snr_db:.2f}" if j.split != "supplemental" else "",
                    "_".join(f"{k}_{v}" for k, v in j.attrs.items()),
                ]
            )


def _prepare(out: Path, names: list[str], overwrite: bool) -> None:
    if (out / "dev_data").exists() and any(out.iterdir()):
        if not overwrite:
            raise DatasetExists(
                f"{out}: already holds a dev_data folder; choose an empty folder or allow "
                "overwriting (overwrite=True, or --overwrite on the command line), which replaces "
                "the folders of the machine types being generated"
            )
        for name in names:
            shutil.rmtree(out / "dev_data" / "raw" / name, ignore_errors=True)


def _context() -> mp.context.BaseContext:
    """Fork where the platform has it: workers only run numpy code, and fork, unlike spawn, does
    not re-import the caller's main script (which breaks for stdin, notebooks and unguarded
    scripts). The bytes written do not depend on the start method."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def generate_dataset(
    out_dir: str | Path,
    seed: int = 0,
    scale: float = 1.0,
    duration: float = 10.0,
    machines: Iterable[str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
    target_train: int | None = None,
) -> dict:
    """Write a synthetic DCASE2025-layout development set; returns a summary.

    ``scale`` shrinks the clip counts (floors keep every metric defined); ``workers`` processes
    render in parallel (default: up to 2); ``progress("synthesising clips", done, total, {})`` is
    called as clips land. A folder that already holds ``dev_data`` is refused (FileExistsError)
    unless ``overwrite``, which deletes and rewrites the folders of the requested machine types
    only. The bytes depend only on (seed, scale, duration) per machine type, not on ``workers`` or
    the other types.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    if isinstance(machines, str):
        machines = [machines]
    names = list(dict.fromkeys(machines)) if machines else list(DEFAULT_MACHINES)
    unknown = [m for m in names if m not in MACHINES]
    if unknown:
        raise ConfigError(f"unknown machine type(s) {unknown}; known: {sorted(MACHINES)}")
    if duration < 0.5:
        raise ConfigError(f"duration must be at least 0.5 s, got {duration}")
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    clip_counts(scale, target_train)  # validate before touching the folder
    _prepare(out, names, overwrite)
    jobs: list[ClipJob] = []
    for name in names:
        mt = MACHINES[name]
        mjobs = plan_machine(out, mt, seed, scale, duration, target_train=target_train)
        mdir = out / "dev_data" / "raw" / name
        for split in ("train", "test", "supplemental"):
            (mdir / split).mkdir(parents=True, exist_ok=True)
        _write_attributes(mdir, mt, mjobs)
        jobs += mjobs
    total = len(jobs)
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    done = 0
    if workers == 1 or total < 8:
        for job in jobs:
            _work(job)
            done += 1
            if progress:
                progress("synthesising clips", done, total, {})
    else:
        with _context().Pool(workers) as pool:
            for _ in pool.imap_unordered(_work, jobs, chunksize=8):
                done += 1
                if progress:
                    progress("synthesising clips", done, total, {})
    _write_manifest(out, jobs)
    per_machine = {}
    for name in names:
        mj = [j for j in jobs if j.machine == name]
        cnt: dict[str, int] = {}
        for j in mj:
            key = (
                f"{j.split}_{j.domain}_{j.label}"
                if j.split != "supplemental"
                else f"supplemental_{j.label}"
            )
            cnt[key] = cnt.get(key, 0) + 1
        per_machine[name] = {
            "clips": len(mj),
            "counts": cnt,
            "hidden_attributes": MACHINES[name].hidden,
            "anomalies": list(MACHINES[name].anomalies),
        }
    return {
        "root": str(out),
        "dev_root": str(out / "dev_data"),
        "manifest": str(out / MANIFEST),
        "seed": seed,
        "scale": scale,
        "duration": duration,
        "sample_rate": SAMPLE_RATE,
        "clips": total,
        "n_clips": total,
        "machines": per_machine,
        "workers": workers,
        "seconds": round(time.perf_counter() - t0, 2),
    }
