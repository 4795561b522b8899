"""Dual-branch CNN on the CPU: training throughput (clips/s per epoch) and embedding time per clip.

    python benchmarks/bench_dualcnn.py [--clips 64] [--seconds 10] [--epochs 2] [--batch 32]
                                       [--threads 2]

Synthetic random 10 s clips (tones + noise, 7 classes). Training numbers include the whole step
(host gather, features, mixup, forward, both AdaCos heads, backward, Adam). The first epoch carries
one-off warm-up costs; the best epoch is the steady-state figure. On a shared machine wall-clock
figures understate the network's speed, so clips per CPU-second (process time of all threads) are
printed too.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stethoscope.devices import torch_threads
from stethoscope.models.dualcnn import DualCNNConfig, embed, embed_views, train_dualcnn

SR = 16_000


def synthetic_clips(
    n: int, seconds: float, n_classes: int, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR), dtype=np.float32) / SR
    labels = rng.integers(0, n_classes, n)
    waves = [
        (
            0.1 * np.sin(2 * np.pi * 100.0 * (c + 1) * t + rng.uniform(0, 6.3))
            + 0.05 * rng.standard_normal(t.size).astype(np.float32)
        ).astype(np.float32)
        for c in labels
    ]
    return waves, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--embed-clips", type=int, default=32)
    args = ap.parse_args()

    waves, labels = synthetic_clips(args.clips, args.seconds, 7)
    cfg = DualCNNConfig(epochs=args.epochs, batch_size=args.batch, seed=0, threads=args.threads)
    print(
        f"training {args.clips} clips x {args.seconds:g} s, batch {args.batch}, "
        f"{args.threads} thread(s)"
    )
    cpu_rates: list[float] = []
    clock = [time.process_time()]

    def report(stage: str, e: float, n: int, m: dict) -> None:
        if not float(e).is_integer():
            return  # a mid-epoch report
        now = time.process_time()
        cpu_rates.append(args.clips / max(now - clock[0], 1e-9))  # per CPU-second, all threads
        clock[0] = now
        print(
            f"  epoch {e}/{n}: {m['samples_per_s']:.1f} clips/s wall ({m['seconds']:.1f} s), "
            f"{cpu_rates[-1]:.1f} clips per CPU-second, loss {m['loss']:.3f}"
        )

    model, history = train_dualcnn(waves, labels, 7, cfg, "cpu", progress=report)
    best = max(h["samples_per_s"] for h in history)
    print(
        f"train: best epoch {best:.1f} clips/s wall, {max(cpu_rates):.1f} clips per CPU-second "
        f"(wall ~= threads x the latter on an idle machine)"
    )

    ew = waves[: args.embed_clips]
    with torch_threads(args.threads):  # as the front end embeds
        embed(model, ew[:2])  # warm-up
        t0 = time.perf_counter()
        embed(model, ew, batch_size=32)
        dt = (time.perf_counter() - t0) / len(ew)
        print(f"embed: {1000 * dt:.1f} ms/clip ({1 / dt:.1f} clips/s)")
        t0 = time.perf_counter()
        embed_views(model, ew[:8], n_views=5, crop_seconds=args.seconds / 2)
        dv = (time.perf_counter() - t0) / 8
    print(f"embed_views (5 views): {1000 * dv:.1f} ms/clip")


if __name__ == "__main__":
    main()
