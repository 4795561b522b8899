"""AE baseline speed: training seconds per epoch and scoring milliseconds per clip (CPU or CUDA).

    python benchmarks/bench_ae.py [DATA_ROOT] [--machine slider] [--epochs 3] [--device auto]
                                  [--threads N]

Defaults to ../shared/data/real/dcase2020_slider (75 training clips of 10 s). Prints figures only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from stethoscope.backends.ae_scores import AEMahalaBackend, AEMSEBackend
from stethoscope.backends.base import FitData
from stethoscope.data import Catalog
from stethoscope.devices import cpu_threads, resolve_device
from stethoscope.features import LogMel, extract
from stethoscope.models.ae import AEConfig, reconstruction_residuals, train_ae


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    shared = Path(__file__).resolve().parents[2] / "shared"
    ap.add_argument("data", nargs="?", type=Path, default=shared / "data/real/dcase2020_slider")
    ap.add_argument("--machine", default=None)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--threads",
        type=int,
        default=AEConfig.threads,
        help="torch threads on the CPU (default: the AE's own setting)",
    )
    args = ap.parse_args()
    cat = Catalog.scan(args.data)
    machine = args.machine or cat.machines()[0]
    train = cat.select(machine=machine, split="train")
    test = cat.select(machine=machine, split="test")
    fx = LogMel()
    tr = extract(train, fx)
    te = extract(test, fx)
    n_vec = sum(len(v) for v in tr.features)
    print(
        f"machine {machine}: {len(tr.clips)} train clips ({n_vec} vectors), "
        f"{len(te.clips)} test clips; torch {torch.__version__}, {args.threads} thread(s) on "
        f"the CPU, device {args.device}"
    )
    cfg = AEConfig(epochs=args.epochs, threads=args.threads)
    t0 = time.perf_counter()
    model, hist = train_ae(tr.features, cfg, args.device)
    dt = time.perf_counter() - t0
    per_epoch = float(np.median([h["seconds"] for h in hist]))
    print(
        f"training: {dt:.1f} s for {args.epochs} epochs; per epoch median {per_epoch:.2f} s "
        f"({n_vec / per_epoch:,.0f} vectors/s); 100 epochs ~ {100 * per_epoch:.0f} s"
    )
    dev = resolve_device(args.device)
    with cpu_threads(args.threads, dev):  # as the AE front end scores
        res_tr = reconstruction_residuals(model, tr.features, device=dev)
        doms = np.array([c.domain for c in tr.clips])
        mse = AEMSEBackend().fit(FitData(res_tr, doms))
        mahala = AEMahalaBackend().fit(FitData(res_tr, doms))
        t0 = time.perf_counter()
        res_te = reconstruction_residuals(model, te.features, device=dev)
        mse.score(res_te)
        mahala.score(res_te)
        dt = time.perf_counter() - t0
    print(
        f"scoring (residuals + MSE + Mahalanobis, features excluded): "
        f"{1000 * dt / max(len(te.clips), 1):.1f} ms/clip"
    )


if __name__ == "__main__":
    main()
