"""Latency of one 10 s clip on ONE CPU core: the torch runtime against the ONNX export, side by side.

    python benchmarks/bench_latency.py [DATA_ROOT] [--clips 200] [--warmup 10]
                                       [--systems ae-mse,cnn-kmeans,acae] [--epochs 0]

Defaults to ../shared/data/real/dcase2020_slider (10 s clips at 16 kHz). Each system is trained
there (``--epochs 0`` by default: the networks keep their initial weights, which costs the same
per clip as trained ones, and the back ends are fitted on their outputs), exported, and then every
test clip is scored from its file by both runtimes in turn (decoding, features, network, back
end: ``Detector.score``), ``--clips`` times in all after ``--warmup`` clips. torch runs with one
thread, onnxruntime with one intra-op thread, numpy's BLAS with one thread. Wall-clock and CPU
milliseconds per clip: on a machine shared with other jobs the CPU time is the steadier figure.
Prints figures only, with the load average before and after.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy and torch start their thread pools

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402

from stethoscope.data import Catalog  # noqa: E402
from stethoscope.detector import Detector  # noqa: E402
from stethoscope.export.runtime import load_onnx_detector  # noqa: E402
from stethoscope.export.writer import export_model  # noqa: E402
from stethoscope.pipeline.fit import fit_systems  # noqa: E402
from stethoscope.systems import get_system  # noqa: E402


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(__file__).resolve().parents[2] / "shared"
    ap.add_argument("data", nargs="?", type=Path, default=shared / "data/real/dcase2020_slider")
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--systems", default="ae-mse,cnn-kmeans,acae")
    ap.add_argument("--epochs", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="keep the models here (default: tmp)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    cat = Catalog.scan(args.data)
    machine = cat.machines()[0]
    files = [c.path for c in cat.select(machine=machine, split="test")]
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, numpy "
          f"{np.__version__}; {machine}: {len(files)} test clips; load average {load_average()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        configs = [
            get_system(s).with_frontend_params(epochs=args.epochs, threads=1)
            for s in args.systems.split(",")
        ]
        todo = [c for c in configs if not (work / c.name / "system.json").exists()]
        if todo:
            fit_systems(cat, todo, save_to=lambda c: work / c.name, cache_dir=work / "cache",
                        device="cpu")  # fmt: skip
        print(f"{'system':<12} {'runtime':<7} {'wall median':>11} {'p90':>7} {'CPU median':>11} "
              f"{'p90':>7}   decode / features / model+back end (wall median, ms)")  # fmt: skip
        for cfg in configs:
            export_model(work / cfg.name, work / f"{cfg.name}-onnx")
            dets = {
                "torch": Detector.load(work / cfg.name, device="cpu"),
                "onnx": load_onnx_detector(work / f"{cfg.name}-onnx", threads=1),
            }
            times: dict[str, list[float]] = {k: [] for k in dets}
            cpu: dict[str, list[float]] = {k: [] for k in dets}
            parts: dict[str, list[list[float]]] = {k: [] for k in dets}
            for i in range(args.warmup + args.clips):
                path = files[i % len(files)]
                for name, det in dets.items():  # in turn: both see the same load
                    t0, c0 = time.perf_counter(), time.process_time()
                    r = det.score(path, machine)
                    dt, dc = time.perf_counter() - t0, time.process_time() - c0
                    if i >= args.warmup:
                        times[name].append(1e3 * dt)
                        cpu[name].append(1e3 * dc)
                        t = r.timings
                        parts[name].append([t["decode_ms"], t["features_ms"], t["model_ms"]])
            for name in dets:
                ms, cs = np.array(times[name]), np.array(cpu[name])
                split = " / ".join(f"{v:.2f}" for v in np.median(parts[name], axis=0))
                print(f"{cfg.name:<12} {name:<7} {np.median(ms):11.2f} {np.percentile(ms, 90):7.2f} "
                      f"{np.median(cs):11.2f} {np.percentile(cs, 90):7.2f}   {split}")  # fmt: skip
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
