"""Training the dual-branch CNN as the data grows: wall time, clips/s and peak RSS per data size.

    python benchmarks/bench_training_memory.py --data-dir /work/data/scale --cache-dir /tmp/cache \\
        --sizes 1000,7000,20000 --epochs 1 --max-steps 8

Per size N (training clips over the 7 default machine types, 10 s each by default), a synthetic
DCASE-layout set is written with `stethoscope.synth.generate_dataset` (seed 0, scale N / 7000) to
DATA_DIR/n<N>_<seconds>s, or reused if it is there. Then a fresh Python process per size does what
`stethoscope fit` does for the dual-branch CNN's front end: reads the training clips' waveforms
through the feature cache (filling it on the first run) and trains `DualCNNFrontEnd` on them, and
reports its own peak resident set size (getrusage ru_maxrss, the kernel's high-water mark of
the process, file-backed mapped pages included). ``--max-steps`` bounds the steps per epoch so
that a CPU measures the curve in minutes: memory is what is measured, and a step reads a batch
whatever the data size, while everything that grows with the data (clip lists, labels, the
features' fingerprint over all clips, the epoch's permutation) is still done in full.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

PER_SET = 7000  # training clips of the default machine types at scale 1.0


def dataset(data_dir: Path, n: int, seconds: float, workers: int) -> Path:
    """The synthetic set of about ``n`` training clips of ``seconds`` (written unless present)."""
    from stethoscope.synth import generate_dataset

    root = data_dir / f"n{n}_{seconds:g}s"
    if (root / "dev_data").is_dir() and (root / "synth_manifest.csv").exists():
        return root
    t0 = time.perf_counter()
    summary = generate_dataset(
        root, seed=0, scale=n / PER_SET, duration=seconds, workers=workers, overwrite=True
    )
    print(
        f"  wrote {summary['clips']} clips to {root} in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return root


def child(root: Path, cache: Path, epochs: int, max_steps: int | None, batch: int) -> None:
    """One measurement (run in a fresh process): features through the cache, then training."""
    from stethoscope.data import Catalog
    from stethoscope.models.dualcnn import DualCNNFrontEnd
    from stethoscope.pipeline.features import load_features

    t0 = time.perf_counter()
    clips = Catalog.scan(root).select(split="train")
    feats = load_features(clips, "waveform", cache_dir=cache, device="cpu")
    t1 = time.perf_counter()
    params = {"epochs": epochs, "batch_size": batch, "max_steps": max_steps}
    frontend = DualCNNFrontEnd(params, device="cpu")
    history: list[dict] = []

    def progress(stage: str, done: float, total: int, info: dict) -> None:
        if float(done).is_integer() and "samples_per_s" in info:
            history.append(info)

    frontend.fit(feats.clips, feats.features, progress=progress)
    t2 = time.perf_counter()
    with open(f"/proc/{os.getpid()}/status") as fh:
        hwm = next((line.split()[1] for line in fh if line.startswith("VmHWM")), "0")
    print(
        json.dumps(
            {
                "clips": len(feats.clips),
                "cached": feats.n_cached,
                "features_s": t1 - t0,
                "train_s": t2 - t1,
                "wall_s": t2 - t0,
                "steps_clips": sum(h["samples_per_s"] * h["seconds"] for h in history),
                "clips_per_s": sum(h["samples_per_s"] * h["seconds"] for h in history)
                / max(sum(h["seconds"] for h in history), 1e-9),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "vm_hwm_mb": int(hwm) / 1024,
            }
        ),
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--sizes", default="1000,7000,20000", help="training clips per set")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=None, help="steps per epoch (None: all)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--synth-workers", type=int, default=2)
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, args.cache_dir, args.epochs, args.max_steps, args.batch)
        return
    rows = []
    for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
        print(f"{n} clips of {args.seconds:g} s:", flush=True)
        root = dataset(args.data_dir, n, args.seconds, args.synth_workers)
        cmd = [
            sys.executable, __file__, "--child", str(root), "--data-dir", str(args.data_dir),
            "--cache-dir", str(args.cache_dir), "--epochs", str(args.epochs),
            "--batch", str(args.batch),
        ]  # fmt: skip
        if args.max_steps is not None:
            cmd += ["--max-steps", str(args.max_steps)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"measurement of {n} clips failed:\n{res.stdout}\n{res.stderr}")
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"  {row['clips']} clips ({row['cached']} cached): features {row['features_s']:.1f} s, "
            f"training {row['train_s']:.1f} s ({row['clips_per_s']:.1f} clips/s), "
            f"wall {row['wall_s']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    print(f"\nsteps per epoch: {args.max_steps or 'all'}, epochs {args.epochs}, batch {args.batch}")
    print("clips  | cached | features s | train s | clips/s | wall s | peak RSS MB")
    for r in rows:
        print(
            f"{r['clips']:6d} | {r['cached']:6d} | {r['features_s']:10.1f} | {r['train_s']:7.1f} | "
            f"{r['clips_per_s']:7.1f} | {r['wall_s']:6.1f} | {r['peak_rss_mb']:11.0f}"
        )


if __name__ == "__main__":
    main()
