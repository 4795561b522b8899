"""Synthetic dataset generation speed (and, optionally, how hard the data are).

    python benchmarks/bench_synth.py [--scale F] [--duration S] [--workers W] [--out DIR]
                                     [--machines fan valve ...] [--check]
                                     [--channels mono|near-far] [--noise-db DB]

Writes a dataset (to a temporary folder unless ``--out``), prints clips/s, wall time and worker
CPU-ms per clip (process CPU time of a one-clip-per-machine warm-up pass, less sensitive than wall
time to other jobs on a shared machine). ``--check`` then runs the simple mean-log-mel detector of
``stethoscope.synth.check`` and prints AUC-s / AUC-t / pAUC per machine type.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from stethoscope.synth import DEFAULT_MACHINES, clip_durations, generate_dataset
from stethoscope.synth.generator import plan_machine, synthesise
from stethoscope.synth.machines import MACHINES


def cpu_ms_per_clip(
    duration: float | None, machines: list[str], reps: int = 3, channels: str = "mono"
) -> float:
    """Single-process CPU time to synthesise one clip (no file writing), averaged over types."""
    jobs = []
    for m, seconds in clip_durations(machines, duration, channels).items():
        plan = plan_machine(Path("/nonexistent"), MACHINES[m], 0, 0.01, seconds, channels=channels)
        jobs += [j for j in plan if j.label == "anomaly"][:1] + plan[:reps]
    synthesise(jobs[0])  # warm-up
    t0 = time.process_time()
    for j in jobs:
        synthesise(j)
    return (time.process_time() - t0) / len(jobs) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=None, help="default: by channels")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the dataset here")
    ap.add_argument("--machines", nargs="*", default=None)
    ap.add_argument("--check", action="store_true", help="run the simple detector afterwards")
    ap.add_argument("--channels", choices=["mono", "near-far"], default="mono")
    ap.add_argument("--noise-db", type=float, default=None, help="near-far environmental noise")
    args = ap.parse_args()
    machines = args.machines or list(DEFAULT_MACHINES)
    seconds = clip_durations(machines, args.duration, args.channels)
    length = "/".join(f"{s:g}" for s in sorted(set(seconds.values())))

    print(
        f"synthesis CPU: {cpu_ms_per_clip(args.duration, machines, channels=args.channels):.1f} "
        f"ms/clip ({length} s {args.channels} clips, one process, no writing)"
    )
    out = args.out or Path(tempfile.mkdtemp(prefix="stethoscope_synth_"))
    last = [0.0]

    def progress(stage: str, done: float, total: int, info: dict) -> None:
        now = time.perf_counter()
        if now - last[0] > 10 or done == total:
            last[0] = now
            print(f"  {done}/{total}", flush=True)

    try:
        t0 = time.perf_counter()
        summary = generate_dataset(
            out,
            seed=args.seed,
            scale=args.scale,
            duration=args.duration,
            machines=machines,
            workers=args.workers,
            progress=progress,
            channels=args.channels,
            noise_db=args.noise_db,
        )
        wall = time.perf_counter() - t0
        n = summary["clips"]
        print(
            f"scale {args.scale:g}: {n} clips of {length} s, {len(machines)} machine "
            f"types, {summary['workers']} workers: {wall:.1f} s wall, {n / wall:.1f} clips/s, "
            f"{wall / n * 1000 * summary['workers']:.1f} worker-ms/clip"
        )
        if args.check:
            from stethoscope.synth.check import evaluate_dataset, format_table

            t1 = time.perf_counter()
            views = {"": None} if args.channels == "mono" else {", near": 0, ", far": 1}
            for view, channel in views.items():
                for mode, table in evaluate_dataset(out, machines, channel=channel).items():
                    print(
                        f"simple detector{view}, mean from "
                        f"{'own domain' if mode == 'domain' else 'all'} training clips:"
                    )
                    print(format_table(table))
            print(f"check: {time.perf_counter() - t1:.1f} s")
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
