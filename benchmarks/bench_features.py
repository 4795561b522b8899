"""Log-mel throughput: the official librosa definition against ``stethoscope.features.extract``.

    python benchmarks/bench_features.py [WAV_FOLDER] [--repeat 5] [--workers 2] [--synth FOLDER]

On the same clips, in one run, best of ``--repeat`` for each contender:

(a) the official definition, one clip at a time as the AE baseline's ``file_to_vectors`` does:
    ``librosa.load(sr=None)`` + ``librosa.feature.melspectrogram`` + 10*log10 + 5-frame stacking.
    It runs with numpy's BLAS threads as they are and limited to one; the faster counts;
(b) ours with the cache disabled;
(w) ours filling a fresh cache (a new folder for every repetition);
(c) ours from the warm cache (memory-mapped ``.npy``, no decoding).

Each is printed as clips/s, CPU-ms/clip (this process; less sensitive than wall time to other jobs
on a shared machine) and the ratio to (a), with the largest difference to (a) in dB. Files are
read once first so every contender finds them in the OS page cache. The load average is printed
before and after: rerun when it was high. ``--synth`` also times one extraction of a whole data
set into a throwaway cache (under ``--tmp``), then a second pass from it. Prints figures only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

R = TypeVar("R")


def default_folder() -> Path:
    env = os.environ.get("STETHOSCOPE_SHARED")
    shared = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return shared / "data" / "real"


def official_vectors(path: Path) -> np.ndarray:
    """The baseline's definition with librosa, written out (fixtures/official_logmel/README.md)."""
    import librosa

    y, sr = librosa.load(path, sr=None, mono=True)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=sr,
        n_fft=1024,
        hop_length=512,
        n_mels=128,
        power=2.0,
        fmin=0.0,
        fmax=None,
        win_length=None,
    )
    log_mel = 20.0 / 2.0 * np.log10(np.maximum(mel, sys.float_info.epsilon))
    n_vec = log_mel.shape[1] - 5 + 1
    vectors = np.zeros((n_vec, 640))
    for t in range(5):
        vectors[:, 128 * t : 128 * (t + 1)] = log_mel[:, t : t + n_vec].T
    return vectors


def best_of(
    repeat: int, fn: Callable[[], R], setup: Callable[[], None] | None = None
) -> tuple[float, float, R]:
    """(best wall seconds, CPU seconds of that run, its result); ``setup`` runs untimed first."""
    runs = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        runs.append((time.perf_counter() - t, time.process_time() - c, result))
    return min(runs, key=lambda r: r[0])


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def identity_costs(paths: list[Path], repeat: int) -> None:
    """Microseconds per clip of the cache key: the stat-based one in use, the older
    (path, size, mtime) one, and hashing the first and last 4 KiB of the file on top."""
    from stethoscope.features import clip_identity

    def old(p: Path) -> str:
        st = os.stat(p)
        blob = f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}".encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def blocks(p: Path) -> str:
        h = hashlib.sha256(clip_identity(p).encode())
        with open(p, "rb") as fh:
            h.update(fh.read(4096))
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
            h.update(fh.read(4096))
        return h.hexdigest()[:32]

    def all_clips(fn: Callable[[Path], str]) -> Callable[[], list[str]]:
        return lambda: [fn(p) for p in paths]

    for label, fn in [
        ("path, size, mtime (before)", old),
        ("+ inode, ctime (in use)", clip_identity),
        ("+ hash of first/last 4 KiB", blocks),
    ]:
        t, _, _ = best_of(repeat, all_clips(fn))
        print(f"    cache key {label:28s} {t / len(paths) * 1e6:6.1f} us/clip")


def time_data_set(folder: Path, workers: int, tmp_root: Path) -> None:
    """One extraction of every clip under ``folder`` into a fresh cache, then from that cache."""
    from stethoscope.features import LogMel, extract

    paths = sorted(folder.rglob("*.wav"))
    if not paths:
        print(f"no .wav files under {folder}; data set not timed")
        return
    size = sum(p.stat().st_size for p in paths)
    tmp = tempfile.mkdtemp(prefix="bench-features-synth-", dir=tmp_root)
    try:
        print(f"\n{len(paths)} clips ({size / 2**30:.2f} GiB) under {folder}; {load()}")
        res = extract(paths, LogMel(), cache=tmp, workers=workers)
        print(
            f"    extraction into a fresh cache: {res.seconds:.1f} s "
            f"({res.clips_per_second:.0f} clips/s), {len(res.failures)} failures; {load()}"
        )
        again = extract(paths, LogMel(), cache=tmp, workers=workers)
        print(
            f"    again from that cache: {again.seconds:.2f} s "
            f"({again.clips_per_second:.0f} clips/s, {again.n_cached} cached)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folder", nargs="?", type=Path, default=default_folder())
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--synth",
        type=Path,
        default=None,
        help="also time one extraction of every clip under this folder",
    )
    ap.add_argument(
        "--tmp",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the throwaway caches go (creating files costs more on some disks)",
    )
    args = ap.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    from stethoscope.features import FeatureCache, LogMel, extract

    paths = sorted(args.folder.rglob("*.wav"))
    if not paths:
        sys.exit(f"no .wav files under {args.folder}")
    for p in paths:  # warm the OS page cache for every contender alike
        p.read_bytes()
    n = len(paths)
    ext = LogMel()
    run = dict(device=args.device, batch_size=args.batch_size, workers=args.workers)
    print(
        f"{n} clips from {args.folder}; torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {os.cpu_count()} CPUs, device {args.device}, {args.workers} workers, "
        f"caches under {args.tmp}; {load()}"
    )

    official_vectors(paths[0])  # one-time costs (imports, filterbank, FFT plans) not timed
    extract(paths[:8], ext, **run)
    t_a, c_a, ref = best_of(args.repeat, lambda: [official_vectors(p) for p in paths])
    with threadpool_limits(limits=1, user_api="blas"):  # spinning BLAS threads can hurt librosa
        t_a1, c_a1, _ = best_of(args.repeat, lambda: [official_vectors(p) for p in paths])
    a_note = (
        f"default BLAS threads; {n / t_a1:.1f} clips/s with one"
        if t_a <= t_a1
        else f"BLAS limited to one thread; {n / t_a:.1f} clips/s with the default"
    )
    t_a, c_a = min((t_a, c_a), (t_a1, c_a1))  # compare against librosa at its best
    t_b, c_b, res = best_of(args.repeat, lambda: extract(paths, ext, cache=None, **run))

    root = Path(tempfile.mkdtemp(prefix="bench-features-", dir=args.tmp))
    try:
        fresh: list[Path] = []

        def new_cache() -> None:
            fresh.append(root / f"fill{len(fresh)}")

        t_w, c_w, _ = best_of(
            args.repeat, lambda: extract(paths, ext, cache=fresh[-1], **run), new_cache
        )
        warm = FeatureCache(fresh[-1])
        t_c, c_c, hit = best_of(args.repeat, lambda: extract(paths, ext, cache=warm, **run))
        cached_bytes = sum(f.stat().st_size for f in fresh[-1].rglob("*.npy"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert hit.n_cached == n, "warm cache missed"
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ref, res.features, strict=True))
    diff_c = max(
        float(np.max(np.abs(a - b))) for a, b in zip(res.features, hit.features, strict=True)
    )

    print(f"(a) is librosa at its best: {a_note}")
    rows = [
        ("(a) official librosa, per clip", t_a, c_a),
        ("(b) ours, no cache", t_b, c_b),
        ("(w) ours, filling a fresh cache", t_w, c_w),
        ("(c) ours, warm cache (mmap)", t_c, c_c),
    ]
    for label, t, c in rows:
        print(
            f"{label:34s} {n / t:8.1f} clips/s  {c / n * 1e3:6.3f} CPU-ms/clip  {t_a / t:5.1f}x (a)"
        )
    print(
        f"max |(a) - (b)| = {diff:.2e} dB; max |(b) - (c)| = {diff_c:.1e}; "
        f"cache {cached_bytes / n / 1024:.0f} KiB/clip; {load()}"
    )
    if res.failures:
        print(f"{len(res.failures)} failures, e.g. {res.failures[0]}")
    identity_costs(paths, args.repeat)
    if args.synth is not None:
        time_data_set(args.synth, args.workers, args.tmp)


if __name__ == "__main__":
    main()
