"""Dual-branch CNN training throughput at DCASE scale, eager and compiled (target: >= 6000 clips/s
compiled on one H100/H200, data loading included).

    python benchmarks/bench_dualcnn_gpu.py                  # 7 machines x 1000 clips x 10 s, 3 epochs
    python benchmarks/bench_dualcnn_gpu.py --device cpu --clips-per-machine 8 --seconds 2 \\
        --epochs 1 --compile-backend aot_eager              # smoke run on a CPU

Data: random waveforms of the DCASE shape built in host memory (per machine type and attribute a
few harmonics of a base pitch, rolled to a random phase per clip, plus white noise; class =
machine x attribute, as the auxiliary task), not `stethoscope.synth`: it is the data path and the
network that are timed. Training goes through the package's `train_dualcnn`: on a GPU whose memory
holds them the clips are fitted once and kept there and batches are index_selects on the device
(``--data-on-device no`` streams batches from host memory instead, as for data larger than the
GPU). Each mode trains a fresh model: ``eager`` (float32), ``eager-bf16`` (bf16 autocast, CUDA
only), ``compiled-bf16`` and ``compiled`` (torch.compile, default backend inductor). Reported
clips/s per epoch include forming the batches; epoch 1 also carries cuDNN auto-tuning and, when
compiled, the compilation, so the steady state is the best later epoch. Copying the set to the
device happens before epoch 1 and is in the "setup" time.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from stethoscope.devices import shared_threads
from stethoscope.models.dualcnn import DualCNNConfig, train_dualcnn

SR = 16_000
TARGET = 6000.0
MODES = {  # name: (compile, amp)
    "eager": (False, False),
    "eager-bf16": (False, True),
    "compiled": (True, False),
    "compiled-bf16": (True, True),
}


def synthetic_set(n_machines: int, per_machine: int, seconds: float, n_attrs: int, seed: int = 0):
    """(waves, labels, n_classes): class = machine x attribute, as the auxiliary task of SPEC 2."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n, dtype=np.float32) / SR
    waves: list[np.ndarray] = []
    labels = np.empty(n_machines * per_machine, dtype=np.int64)
    for m in range(n_machines):
        base_f0 = 60.0 * (m + 1)
        bases = []
        for a in range(n_attrs):  # one base waveform per (machine, attribute), shifted per clip
            f0 = base_f0 * (1.0 + 0.03 * a)
            bases.append(
                sum(np.sin(2 * np.pi * f0 * h * t).astype(np.float32) / h for h in (1, 2, 3, 5))
            )
        attrs = rng.integers(0, n_attrs, per_machine)
        for i, a in enumerate(attrs):
            clip = np.roll(bases[a], int(rng.integers(0, n))) * np.float32(rng.uniform(0.05, 0.2))
            clip += rng.standard_normal(n, dtype=np.float32) * np.float32(0.03)
            waves.append(clip)
            labels[m * per_machine + i] = m * n_attrs + a
    return waves, labels, n_machines * n_attrs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--machines", type=int, default=7)
    ap.add_argument("--clips-per-machine", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--attributes", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--modes", default="eager,eager-bf16,compiled-bf16", help=", ".join(MODES))
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--data-on-device", choices=["auto", "yes", "no"], default="auto")
    ap.add_argument("--max-steps", type=int, default=None, help="steps per epoch (smoke runs)")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --device cpu for a smoke test")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"unknown mode(s) {unknown}; known: {list(MODES)}")

    t0 = time.perf_counter()
    waves, labels, n_classes = synthetic_set(
        args.machines, args.clips_per_machine, args.seconds, args.attributes
    )
    gb = sum(w.nbytes for w in waves) / 2**30
    print(
        f"synthetic waveforms: {len(waves)} clips x {args.seconds:g} s ({gb:.2f} GiB float32), "
        f"{n_classes} classes, built in {time.perf_counter() - t0:.1f} s"
    )
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    threads = f" | {shared_threads()} torch thread(s)" if dev.type == "cpu" else ""
    print(f"device: {name} | torch {torch.__version__}{threads}")
    on_device = {"auto": None, "yes": True, "no": False}[args.data_on_device]
    base = DualCNNConfig(
        epochs=args.epochs,
        batch_size=args.batch,
        seed=0,
        compile_backend=args.compile_backend,
        data_on_device=on_device,
        max_steps=args.max_steps,
    )
    summary = []
    for mode in modes:
        compiled, amp = MODES[mode]
        cfg = dataclasses.replace(base, compile=compiled, amp=amp)

        def report(stage: str, e: float, n: int, m: dict, mode: str = mode) -> None:
            if float(e).is_integer() and "samples_per_s" in m:  # epoch ends only
                print(
                    f"[{mode}] epoch {e}/{n}: {m['samples_per_s']:8.1f} clips/s  "
                    f"{m['seconds']:6.1f} s  loss {m['loss']:.3f}  acc {m['train_acc']:.3f}",
                    flush=True,
                )

        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            torch.cuda.synchronize(dev)
        t1 = time.perf_counter()
        _, history = train_dualcnn(waves, labels, n_classes, cfg, dev, progress=report)
        total = time.perf_counter() - t1
        setup = total - sum(h["seconds"] for h in history)
        rates = [h["samples_per_s"] for h in history]
        steady = max(rates[1:]) if len(rates) > 1 else rates[0]
        peak = (
            f", peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB"
            if dev.type == "cuda"
            else ""
        )
        print(f"[{mode}] setup {setup:.1f} s, train call {total:.1f} s{peak}")
        summary.append((mode, rates, steady))
    print("\nclips/s per epoch (data loading included; epoch 1 includes tuning/compilation):")
    for mode, rates, steady in summary:
        per_epoch = ", ".join(f"{r:.1f}" for r in rates)
        verdict = ""
        if mode.startswith("compiled") and dev.type == "cuda":
            verdict = f"  -> {'PASS' if steady >= TARGET else 'below'} target {TARGET:.0f}"
        print(f"  {mode:14s} {per_epoch}  | steady {steady:.1f}{verdict}")


if __name__ == "__main__":
    main()
