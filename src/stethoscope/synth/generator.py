"""Write a synthetic dataset in the DCASE2025 Task 2 development layout.

``OUT/dev_data/raw/<machine>/{train,test,supplemental}/`` plus ``attributes_00.csv`` per machine and
a ``synth_manifest.csv`` with the ground truth a real dataset would not give (fault kind, severity,
SNR, hidden attributes). Every clip draws from its own seed, derived from (seed, machine, split,
domain, label, index), so the bytes do not depend on the number of worker processes. This module
plans the clips and writes them; :mod:`stethoscope.synth.clip` renders one.

``channels="near-far"`` writes DCASE2026-style two-channel clips instead: the same scene heard by
a microphone near the machine (channel 0) and one farther away (channel 1), with strong
environmental noise (see :mod:`stethoscope.synth.microphones` and
:mod:`stethoscope.synth.environment`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from stethoscope import SAMPLE_RATE
from stethoscope.audio import write_wav
from stethoscope.data.naming import dev_name
from stethoscope.errors import ConfigError, StethoscopeError
from stethoscope.progress import Progress
from stethoscope.synth.clip import ClipJob, clip_rng, near_far_parts, synthesise
from stethoscope.synth.environment import draw_mix
from stethoscope.synth.machines import DEFAULT_MACHINES, MACHINES, MachineType
from stethoscope.synth.manifest import MANIFEST, write_attributes, write_manifest
from stethoscope.synth.microphones import draw_microphones

__all__ = [  # ClipJob, near_far_parts and synthesise live in stethoscope.synth.clip
    "ClipJob",
    "clip_counts",
    "clip_durations",
    "generate_dataset",
    "near_far_parts",
    "plan_machine",
    "synthesise",
]

#: Clip counts per machine at scale 1.0 (the DCASE2025 development set) and the floors at any scale.
FULL_COUNTS = {"train_source": 990, "train_target": 10, "test": 50, "supplemental": 100}
MIN_COUNTS = {"train_source": 10, "train_target": 2, "test": 3, "supplemental": 2}
TARGET_SNR_DB = (-6.0, -3.0)  # the target site is noisier: shifts of the low and high SNR ends
CHANNELS = ("mono", "near-far")
#: clip length of mono data unless told otherwise, seconds (the DCASE2025 length)
MONO_DURATION = 10.0
#: clip length of near-far data per machine type unless told otherwise, seconds, in the DCASE2026
#: manner of one length per type: short clips where the sound repeats within a second or two (the
#: valve's and the slider's duty cycles), 10 s for the steadily rotating machines, and 16 s for the
#: toy vehicles, whose wheel and rail-joint events come slowly
NEAR_FAR_DURATIONS = {
    "ToyCar": 16.0,
    "ToyTrain": 16.0,
    "bearing": 10.0,
    "fan": 10.0,
    "gearbox": 10.0,
    "slider": 6.0,
    "valve": 6.0,
}
#: default environmental noise level of near-far data: at the near microphone, relative to the
#: machine there (dB, varied per clip and domain, see :mod:`stethoscope.synth.environment`)
NEAR_FAR_NOISE_DB = 3.0


class DatasetExists(StethoscopeError, FileExistsError):
    """The output folder already holds a dataset and overwriting was not allowed."""


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


def clip_durations(
    machines: Iterable[str], duration: float | None = None, channels: str = "mono"
) -> dict[str, float]:
    """Clip length per machine type, seconds: ``duration`` if given, else :data:`MONO_DURATION`
    for mono data and :data:`NEAR_FAR_DURATIONS` for near-far data."""
    if duration is not None:
        return {m: float(duration) for m in machines}
    if channels == "near-far":
        return {m: NEAR_FAR_DURATIONS[m] for m in machines}
    return {m: MONO_DURATION for m in machines}


def plan_machine(
    out: Path,
    mt: MachineType,
    seed: int,
    scale: float,
    duration: float,
    sr: int = SAMPLE_RATE,
    target_train: int | None = None,
    channels: str = "mono",
    noise_db: float = NEAR_FAR_NOISE_DB,
) -> list[ClipJob]:
    """All clips of one machine type, with attributes, faults and SNRs drawn.

    Near-far clips also draw their microphone geometry and noise mix, from a stream of their own:
    the draws of the mono plan stay as they were."""
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
            rng = clip_rng(seed, mt.name, split, domain, label, i, 0)
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
            if channels == "near-far":
                extra = clip_rng(seed, mt.name, split, domain, label, i, 2)
                job.channels = channels
                job.mic = draw_microphones(extra)
                job.env = draw_mix(extra, domain, noise_db) if label != "clean" else None
            if split == "supplemental":
                attr_string = mt.attribute_string(job.attrs) if label == "clean" else "noAttribute"
                name = f"section_00_{domain}_supplemental_{label}_{i:04d}_{attr_string}.wav"
            else:
                name = dev_name("00", domain, split, label, i, mt.attribute_string(job.attrs))
            job.path = root / split / name
            jobs.append(job)
    return jobs


def _work(job: ClipJob) -> str:
    try:
        write_wav(job.path, synthesise(job))
    except Exception as exc:  # name the file: a bare worker traceback does not
        raise RuntimeError(f"{job.path}: could not write synthetic clip ({exc})") from exc
    return job.relative


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
    duration: float | None = None,
    machines: Iterable[str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
    target_train: int | None = None,
    channels: str = "mono",
    noise_db: float | None = None,
) -> dict:
    """Write a synthetic DCASE2025-layout development set; returns a summary.

    ``scale`` shrinks the clip counts (floors keep every metric defined); ``workers`` processes
    render in parallel (default: up to 2); ``progress("synthesising clips", done, total, {})`` is
    called as clips land. A folder that already holds ``dev_data`` is refused (FileExistsError)
    unless ``overwrite``, which deletes and rewrites the folders of the requested machine types
    only. The bytes depend only on (seed, scale, duration, channels, noise_db) per machine type,
    not on ``workers`` or the other types.

    ``channels="near-far"``: two-channel clips in the DCASE2026 manner (channel 0 near the
    machine, channel 1 farther away, strong environmental noise); ``noise_db`` is that noise at
    the near microphone relative to the machine (default :data:`NEAR_FAR_NOISE_DB`), and clips
    last :data:`NEAR_FAR_DURATIONS` seconds per machine type unless ``duration`` says otherwise.
    Mono clips last :data:`MONO_DURATION` seconds unless told otherwise.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    if isinstance(machines, str):
        machines = [machines]
    names = list(dict.fromkeys(machines)) if machines else list(DEFAULT_MACHINES)
    unknown = [m for m in names if m not in MACHINES]
    if unknown:
        raise ConfigError(f"unknown machine type(s) {unknown}; known: {sorted(MACHINES)}")
    if duration is not None and duration < 0.5:
        raise ConfigError(f"duration must be at least 0.5 s, got {duration}")
    if channels not in CHANNELS:
        raise ConfigError(f"channels must be one of {CHANNELS}, got {channels!r}")
    if noise_db is not None and channels == "mono":
        raise ConfigError("noise_db sets the environmental noise of near-far data only")
    if noise_db is not None and not -60.0 <= noise_db <= 40.0:
        raise ConfigError(f"noise_db must be in [-60, 40] dB, got {noise_db}")
    noise = NEAR_FAR_NOISE_DB if noise_db is None else float(noise_db)
    durations = clip_durations(names, duration, channels)
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    clip_counts(scale, target_train)  # validate before touching the folder
    _prepare(out, names, overwrite)
    jobs: list[ClipJob] = []
    for name in names:
        mt = MACHINES[name]
        mjobs = plan_machine(
            out,
            mt,
            seed,
            scale,
            durations[name],
            target_train=target_train,
            channels=channels,
            noise_db=noise,
        )
        mdir = out / "dev_data" / "raw" / name
        for split in ("train", "test", "supplemental"):
            (mdir / split).mkdir(parents=True, exist_ok=True)
        write_attributes(mdir, mt, mjobs)
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
    write_manifest(out, jobs)
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
        "duration": durations[names[0]] if len(set(durations.values())) == 1 else None,
        "durations": durations,
        "channels": channels,
        "noise_db": noise if channels == "near-far" else None,
        "sample_rate": SAMPLE_RATE,
        "clips": total,
        "n_clips": total,
        "machines": per_machine,
        "workers": workers,
        "seconds": round(time.perf_counter() - t0, 2),
    }
