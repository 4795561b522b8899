"""CPU training on a shared machine: seconds per epoch alone and with a second training at once.

    python benchmarks/bench_training_threads.py [DATA_ROOT] [--models ae,dualcnn,acae]

For each front end and thread count (1, and "all": one per core, torch's default and the
behaviour before the ``threads`` setting), one training runs alone, then two start at once in
separate processes. Prints the median seconds per epoch of each run (the first epoch, with its
warm-up, left out) and how much slower the pair is than the single run. AE: the 75 training clips
of ../shared/data/real/dcase2020_slider on log-mel features, 6 epochs; CNN and ACAE: 32 of those
clips as waveforms, 3 epochs. Figures only, no asserts; check ``uptime`` first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SPECS = {  # model -> (feature, clips, epochs, epochs measured from)
    "ae": ("logmel", None, 6, 1),
    "dualcnn": ("waveform", 32, 3, 1),
    "acae": ("waveform", 32, 3, 1),
}


def child(model: str, threads: str, data: Path, epochs: int) -> None:
    """One training in this process; prints its per-epoch seconds as JSON."""
    arrays = np.load(data)
    inputs = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    labels = np.arange(len(inputs)) % 2
    n = os.cpu_count() if threads == "all" else int(threads)
    if model == "ae":
        from stethoscope.models.ae import AEConfig, train_ae

        _, hist = train_ae(inputs, AEConfig(epochs=epochs, threads=n), device="cpu")
    elif model == "dualcnn":
        from stethoscope.models.dualcnn import DualCNNConfig, train_dualcnn

        _, hist = train_dualcnn(
            inputs, labels, 2, DualCNNConfig(epochs=epochs, batch_size=8, threads=n), device="cpu"
        )
    else:
        from stethoscope.models.acae import ACAEConfig, train_acae

        _, _, hist = train_acae(
            inputs, labels, 2, ACAEConfig(epochs=epochs, batch_size=8, threads=n), device="cpu"
        )
    print(json.dumps([h["seconds"] for h in hist]))


def _runs(model: str, threads: str, data: Path, epochs: int, at_once: int) -> list[list[float]]:
    cmd = [sys.executable, __file__, "--child", model, threads, str(data), str(epochs)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(at_once)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def _inputs(root: Path, feature: str, n_clips: int | None) -> list[np.ndarray]:
    from stethoscope.data import Catalog
    from stethoscope.features import LogMel, Waveform, extract

    clips = Catalog.scan(root).select(split="train")[:n_clips]
    res = extract(clips, LogMel() if feature == "logmel" else Waveform())
    return list(res.features)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(__file__).resolve().parents[2] / "shared"
    ap.add_argument("data", nargs="?", type=Path, default=shared / "data/real/dcase2020_slider")
    ap.add_argument("--models", default="ae,dualcnn,acae")
    args = ap.parse_args()
    load = os.getloadavg()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load before "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads by default)"
    )
    from stethoscope.devices import shared_threads
    from stethoscope.models.acae import ACAEConfig
    from stethoscope.models.ae import AEConfig
    from stethoscope.models.dualcnn import DualCNNConfig

    defaults = {
        m: c().threads or shared_threads()
        for m, c in (("ae", AEConfig), ("dualcnn", DualCNNConfig), ("acae", ACAEConfig))
    }
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            feature, n_clips, epochs, skip = SPECS[model]
            data = Path(tmp) / f"{feature}_{n_clips}.npz"
            if not data.exists():
                inputs = _inputs(args.data, feature, n_clips)
                np.savez(data, *inputs)
            print(
                f"{model}: {epochs} epochs, median s/epoch from epoch {skip + 1} "
                f"(default threads: {defaults[model]})"
            )
            for threads in ("1", "all"):
                alone = statistics.median(_runs(model, threads, data, epochs, 1)[0][skip:])
                pair = [statistics.median(r[skip:]) for r in _runs(model, threads, data, epochs, 2)]
                print(
                    f"  threads={threads:>3}: alone {alone:6.2f} s; two at once "
                    f"{pair[0]:6.2f} s and {pair[1]:6.2f} s ({max(pair) / alone:.1f}x)",
                    flush=True,
                )
    load = os.getloadavg()
    print(f"load after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
