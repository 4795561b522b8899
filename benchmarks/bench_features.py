"""Log-mel throughput: the official librosa definition vs our batched torch pipeline vs warm cache.

    python benchmarks/bench_features.py [WAV_FOLDER] [--n N] [--repeat R] [--threads T]

(a) official: per clip, ``librosa.load(sr=None)`` + ``librosa.feature.melspectrogram`` + log +
    5-frame stacking into a float64 matrix, as the AE baseline's ``file_to_vectors`` does;
(b) ours as ``extract`` runs it, no cache: on Linux/CPU this process and forked helper processes,
    each reading the 16-bit samples and computing with the C kernels around torch's FFT (where
    built);
(b1) the same with everything in this process (threads), as on other platforms;
(c) ours reading a warm cache (memory-mapped .npy, no decoding).
Every timing is warm (each path runs once first, which also starts the helper pool; that start is
printed apart; files are read once so the OS cache is warm) and the best of ``--repeat`` runs,
since the machine may be shared. (a) runs with numpy's BLAS threads as they are and limited to one,
and the faster is the reference. CPU-ms/clip (this process and its feature helpers) is printed
next to clips/s: it is less sensitive than wall time to other jobs on the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np


def default_folder() -> Path:
    env = os.environ.get("STETHOSCOPE_SHARED")
    shared = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return shared / "data" / "real"


def official_vectors(path: Path) -> np.ndarray:
    """The baseline's definition with librosa, written out (fixtures/official_logmel/README.md)."""
    import librosa

    y, sr = librosa.load(path, sr=None, mono=True)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128,
                                         power=2.0, fmin=0.0, fmax=None, win_length=None)
    log_mel = 20.0 / 2.0 * np.log10(np.maximum(mel, sys.float_info.epsilon))
    n_vec = log_mel.shape[1] - 5 + 1
    vectors = np.zeros((n_vec, 640))
    for t in range(5):
        vectors[:, 128 * t:128 * (t + 1)] = log_mel[:, t:t + n_vec].T
    return vectors


def cpu_seconds() -> float:
    """CPU time of this process plus the feature helpers' (/proc/<pid>/schedstat, nanoseconds)."""
    from stethoscope.features import processes

    total = time.process_time()
    for pid in processes.helper_pids():
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            pass
    return total


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, float, object]:
    """(best wall seconds, CPU seconds of that run, result): CPU time is less sensitive to other
    jobs on a shared machine than wall time."""
    best, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t, c = time.perf_counter(), cpu_seconds()
        out = fn()
        wall = time.perf_counter() - t
        if wall < best:
            best, cpu = wall, cpu_seconds() - c
    return best, cpu, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folder", nargs="?", type=Path, default=default_folder())
    ap.add_argument("--n", type=int, default=0, help="first N clips (0: all)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--workers", type=int, default=2,
                    help="feature streams (processes on Linux/CPU, else threads)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    from stethoscope.features import FeatureCache, LogMel, extract, native, processes

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = sorted(args.folder.rglob("*.wav"))
    if args.n:
        paths = paths[:args.n]
    if not paths:
        sys.exit(f"no .wav files under {args.folder}")
    for p in paths:  # warm the OS page cache for every contender alike
        p.read_bytes()
    n = len(paths)
    ext = LogMel()
    run = dict(device=args.device, batch_size=args.batch_size, workers=args.workers)
    pooled = args.device == "cpu" and processes.usable(ext, n, args.workers)
    helpers = args.workers - 1
    streams = (f"{args.workers} streams (this process + {helpers} forked "
               f"helper{'s' if helpers != 1 else ''})" if pooled else "one process")
    print(f"{n} clips from {args.folder}; torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {os.cpu_count()} CPUs, device {args.device}; C kernels "
          f"{'on' if native.available() else 'off'}; "
          f"{streams}")

    official_vectors(paths[0])  # one-time costs (imports, filterbank, FFT plans) not timed
    t0 = time.perf_counter()
    extract(paths, ext, **run)  # starts the helper pool, once per Python process
    first = time.perf_counter() - t0
    extract(paths, ext, use_processes=False, **run)
    t_a, c_a, ref = best_of(args.repeat, lambda: [official_vectors(p) for p in paths])
    with threadpool_limits(limits=1, user_api="blas"):  # spinning BLAS threads can hurt librosa
        t_a1, c_a1, _ = best_of(args.repeat, lambda: [official_vectors(p) for p in paths])
    a_note = (f"default BLAS threads; {n / t_a1:.1f} clips/s with one" if t_a <= t_a1 else
              f"BLAS limited to one thread; {n / t_a:.1f} clips/s with the default")
    t_a, c_a = min((t_a, c_a), (t_a1, c_a1))  # compare against librosa at its best
    t_b, c_b, res = best_of(args.repeat, lambda: extract(paths, ext, **run))
    t_b1, c_b1, _ = best_of(args.repeat, lambda: extract(paths, ext, use_processes=False, **run))
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        cache = FeatureCache(tmp)
        t_w, c_w, _ = best_of(1, lambda: extract(paths, ext, cache=cache, **run))
        t_c, c_c, hit = best_of(args.repeat, lambda: extract(paths, ext, cache=cache, **run))
        assert hit.n_cached == n, "warm cache missed"
        cached_bytes = sum(f.stat().st_size for f in Path(tmp).rglob("*.npy"))
        diff_c = max(float(np.max(np.abs(a - b))) for a, b in zip(res.features, hit.features))
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ref, res.features))

    times = {"a": (t_a, c_a), "b": (t_b, c_b), "b1": (t_b1, c_b1), "w": (t_w, c_w),
             "c": (t_c, c_c)}
    rate = {k: n / t for k, (t, _) in times.items()}
    cpu = {k: c / n * 1e3 for k, (_, c) in times.items()}
    print(f"(a) is librosa at its best: {a_note}")
    print(f"first call of (b), starting the helpers: {n / first:.1f} clips/s")
    rows = [("a", "(a) official librosa, per clip"), ("b", "(b) ours, decode + log-mel, no cache"),
            ("b1", "(b1) the same, in one process"), ("w", "    ours, filling the cache"),
            ("c", "(c) ours, warm cache (mmap)")]
    for k, label in rows:
        print(f"{label:36s} {rate[k]:8.1f} clips/s  {cpu[k]:6.3f} CPU-ms/clip  "
              f"wall {rate[k] / rate['a']:5.1f}x (a)  CPU {cpu['a'] / cpu[k]:5.1f}x (a)")
    print(f"max |(a) - (b)| = {diff:.2e} dB; (b) vs (c) max diff {diff_c:.1e}; "
          f"cache {cached_bytes / n / 1024:.0f} KiB/clip")
    if res.failures:
        print(f"{len(res.failures)} failures, e.g. {res.failures[0]}")


if __name__ == "__main__":
    main()
