"""Where a log-mel clip's CPU time goes, stage by stage, and what that allows on this machine.

    python benchmarks/bench_feature_stages.py [WAV_FOLDER] [--n 64] [--repeat 5]

Complements ``bench_features.py`` (end-to-end clips/s). On one core (torch threads = 1) it times
each stage of the torch path of ``LogMel`` (the definition on GPU, and on CPU where the C kernels
are not built) over the same 10 s clips, in chunks as that path takes them:
decode (``audio.load_audio``), framing + window, FFT, |X|^2, band-limited mel product, log. Their sum
is the arithmetic a clip needs; twice its rate is what two cores could reach with no overhead at all,
printed next to the librosa definition measured in the same run. "Whole extract on one core" is
``extract`` with one worker, i.e. whatever route it takes (the C kernels where built). It then runs the two heaviest kernels
(FFT, one mel block) on two Python threads with separate data, to show which of them scale: a kernel
that does not scale caps a threaded pipeline below that ceiling. Prints figures only.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import default_folder, official_vectors  # noqa: E402


def per_call(fn: Callable[[], object], repeat: int) -> float:
    """Best seconds per call over ``repeat`` timed calls (after one untimed)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def thread_scaling(make: Callable[[], Callable[[], object]], calls: int) -> float:
    """Calls/s on two threads over calls/s on one, each thread with its own inputs.

    Each thread sets torch to one thread itself: MKL's thread count is per thread, and a new thread
    would otherwise run every FFT and product on all cores.
    """
    ops = [make(), make()]

    def loop(op: Callable[[], object]) -> None:
        torch.set_num_threads(1)
        for _ in range(calls):
            op()

    def rate(k: int) -> float:
        threads = [threading.Thread(target=loop, args=(ops[j],)) for j in range(k)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return k * calls / (time.perf_counter() - t)

    rate(1)
    return rate(2) / rate(1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folder", nargs="?", type=Path, default=default_folder())
    ap.add_argument("--n", type=int, default=64, help="clips of the most common length")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    from stethoscope import audio
    from stethoscope.features import LogMel, extract
    from stethoscope.features.logmel import LOG_FLOOR, _mel_blocks

    torch.set_num_threads(1)
    paths = sorted(args.folder.rglob("*.wav"))
    lengths = [audio.audio_info(p)[0] for p in paths]
    common = max(set(lengths), key=lengths.count)
    paths = [p for p, n in zip(paths, lengths) if n == common][:args.n]
    if not paths:
        sys.exit(f"no .wav files under {args.folder}")
    n = len(paths)
    ext = LogMel()
    c = ext.config
    chunk = ext.cpu_chunk
    waves = [audio.load_audio(p) for p in paths]
    x = torch.from_numpy(np.stack(waves[:chunk]))
    frames = ext._windowed_frames(x)
    spec = torch.fft.rfft(frames, dim=-1)
    z = torch.view_as_real(spec).square().flatten(-2).reshape(-1, 2 * spec.shape[-1])
    blocks = _mel_blocks(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax, 2, ext.cpu_band_block,
                         "cpu")
    mel = torch.cat([z[:, k0:k1] @ w for k0, k1, w in blocks], dim=-1)
    print(f"{n} clips of {common / c.sample_rate:g} s from {args.folder}; one core, chunks of "
          f"{chunk} clips, torch {torch.__version__}")

    stages = {
        "decode (load_audio)": per_call(lambda: [audio.load_audio(p).shape for p in paths], 3) / n,
        "framing + window": per_call(lambda: ext._windowed_frames(x), args.repeat) / chunk,
        "FFT (rfft)": per_call(lambda: torch.fft.rfft(frames, dim=-1), args.repeat) / chunk,
        "|X|^2": per_call(lambda: torch.view_as_real(spec).square(), args.repeat) / chunk,
        "mel product (banded)": per_call(
            lambda: torch.cat([z[:, k0:k1] @ w for k0, k1, w in blocks], dim=-1),
            args.repeat) / chunk,
        "log": per_call(lambda: mel.clamp(min=LOG_FLOOR).log10_().mul_(10.0), args.repeat) / chunk,
    }
    for name, s in stages.items():
        print(f"  {name:24s} {s * 1e3:6.3f} ms/clip")
    floor = sum(stages.values())
    serial = per_call(lambda: extract(paths, ext, workers=1), 3) / n
    official = per_call(lambda: [official_vectors(p) for p in paths], 1) / n
    print(f"  {'sum of the stages':24s} {floor * 1e3:6.3f} ms/clip -> {1 / floor:6.0f} clips/s "
          f"per core")
    print(f"whole extract on one core: {serial * 1e3:.3f} ms/clip ({1 / serial:.0f} clips/s); "
          f"librosa definition: {1 / official:.0f} clips/s")
    print(f"two cores with zero overhead: {2 / floor:.0f} clips/s = {official * 2 / floor:.1f}x "
          f"librosa; the stages alone use {floor / official * 100:.0f} % of one librosa clip's time")

    def fft_op(clips: int) -> Callable[[], Callable[[], object]]:
        def make() -> Callable[[], object]:
            f = frames[:clips].clone()
            return lambda: torch.fft.rfft(f, dim=-1)
        return make

    def mel_op() -> Callable[[], object]:
        k0, k1, w = blocks[len(blocks) // 2]
        zz = z.clone()
        return lambda: zz[:, k0:k1] @ w

    print(f"two threads / one thread (2.00 = perfect): FFT of {chunk} clips "
          f"{thread_scaling(fft_op(chunk), 100):.2f}x, of one clip {thread_scaling(fft_op(1), 400):.2f}x; "
          f"one mel block of {chunk} clips {thread_scaling(mel_op, 4000):.2f}x")


if __name__ == "__main__":
    main()
