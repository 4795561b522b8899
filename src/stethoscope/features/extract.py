"""Features of many clips: cache look-up, then the misses computed in parallel.

A bad file is one line in ``failures`` (file + reason) and the other clips go on, unless the caller
asked to stop. On CPU under Linux, a run of misses is computed by this process and forked helper
processes, which write the cache too (:mod:`stethoscope.features.processes`). Elsewhere, and when
another thread is using those helpers, batches of clips go to a small thread pool, each thread
reading and computing its batch (clip by clip from the files where the extractor prefers that, as
log-mel with the C kernels does; otherwise decoded first and computed together, as on a GPU) and
writing it to the cache (file reading, the C kernels and torch release the GIL), with only
``workers + 1`` batches in memory.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence, TypeVar

import numpy as np
import torch

from stethoscope import audio
from stethoscope.devices import torch_threads
from stethoscope.features import processes
from stethoscope.features.cache import FeatureCache, clip_identity
from stethoscope.features.registry import FeatureExtractor

OnError = Literal["skip", "stop"]
Progress = Callable[[int, int], None]
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class ExtractResult:
    """Features aligned with ``clips`` (the clips that succeeded, in input order)."""

    clips: list[Any]
    features: list[np.ndarray]
    failures: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    n_cached: int = 0
    n_computed: int = 0

    @property
    def clips_per_second(self) -> float:
        n = len(self.clips) + len(self.failures)
        return n / self.seconds if self.seconds > 0 else float("inf")

    def __len__(self) -> int:
        return len(self.clips)


def clip_path(clip: Any) -> Path:
    """A :class:`~stethoscope.data.Clip` or anything with ``.path``, or a plain path."""
    return Path(clip.path) if hasattr(clip, "path") else Path(clip)


def extract(clips: Sequence[Any], extractor: FeatureExtractor,
            cache: FeatureCache | str | Path | None = None, device: torch.device | str = "cpu",
            batch_size: int = 64, on_error: OnError = "skip", progress: Progress | None = None,
            workers: int = 2, use_processes: bool | None = None) -> ExtractResult:
    """Features of ``clips`` with ``extractor``; cached arrays are memory-mapped, not recomputed.

    ``use_processes``: None or True uses the helper processes where
    :func:`stethoscope.features.processes.usable` allows (platform, device, enough misses, an
    extractor with a bounded layout); False keeps everything in this process.
    """
    if on_error not in ("skip", "stop"):
        raise ValueError(f"on_error must be 'skip' or 'stop', not {on_error!r}")
    on_cpu = torch.device(device).type == "cpu"
    by_file = extractor.prefers_files(device)
    start = time.perf_counter()
    store = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
    total = len(clips)
    feats: dict[int, np.ndarray] = {}
    failed: dict[int, tuple[Path, str]] = {}
    ids: dict[int, str] = {}

    def report() -> None:
        if progress:
            progress(len(feats) + len(failed), total)

    def fail(i: int, err: audio.AudioError) -> None:
        if on_error == "stop":
            raise err
        failed[i] = (err.path, err.reason)
        report()

    misses: list[int] = []
    for i, clip in enumerate(clips):
        path = clip_path(clip)
        if store.enabled:
            try:
                ids[i] = clip_identity(path)
            except OSError as exc:
                fail(i, audio.AudioError(path, f"cannot read file ({exc.strerror or exc})"))
                continue
            hit = store.load(extractor, ids[i])
            if hit is not None:
                feats[i] = extractor.from_storage(hit)
                continue
        misses.append(i)
    n_cached = len(feats)
    if n_cached:
        report()

    if (on_cpu and use_processes is not False
            and processes.usable(extractor, len(misses), workers)):
        def take(i: int, stored: np.ndarray | None, err: audio.AudioError | None) -> None:
            if err is not None:
                fail(i, err)
                return
            feats[i] = extractor.from_storage(stored)
            if len(feats) % processes.CHUNK == 0:
                report()

        # The paths as given (clip_path would build a Path per clip: 8 us each, for nothing here).
        misses = processes.run([getattr(c, "path", c) for c in clips], extractor, workers, store,
                               ids, misses, take)
        report()

    def job(batch: list[int]
            ) -> tuple[list[tuple[int, np.ndarray]], list[tuple[int, audio.AudioError]]]:
        """Read, compute and cache one batch (runs in a worker thread)."""
        done: list[tuple[int, np.ndarray]] = []
        bad: list[tuple[int, audio.AudioError]] = []
        if by_file:  # clip by clip, from the file (the extractor's fastest route here)
            for i in batch:
                try:
                    done.append((i, extractor.compute_file(clip_path(clips[i]))))
                except audio.AudioError as err:
                    bad.append((i, err))
        else:  # decode the batch, then compute it together
            waves: list[tuple[int, np.ndarray]] = []
            for i in batch:
                try:
                    waves.append((i, audio.load_audio(clip_path(clips[i]))))
                except audio.AudioError as err:
                    bad.append((i, err))
            out = extractor.compute_batch([w for _, w in waves], device) if waves else []
            done = [(i, f) for (i, _), f in zip(waves, out)]
        if store.enabled:
            for i, f in done:
                store.store(extractor, ids[i], extractor.to_storage(f))
        return done, bad

    batches = [misses[s:s + max(1, batch_size)] for s in range(0, len(misses), max(1, batch_size))]
    n_workers = max(1, min(workers, len(batches)))
    with _threads_per_worker(device, n_workers), \
            contextlib.closing(_in_order(job, batches, n_workers)) as results:
        for done, bad in results:
            for i, err in bad:
                fail(i, err)
            feats.update(done)
            report()

    ok = sorted(feats)
    return ExtractResult(clips=[clips[i] for i in ok], features=[feats[i] for i in ok],
                         failures=[failed[i] for i in sorted(failed)],
                         seconds=time.perf_counter() - start, n_cached=n_cached,
                         n_computed=len(feats) - n_cached)


@contextlib.contextmanager
def _threads_per_worker(device: torch.device | str, workers: int) -> Iterator[None]:
    """On CPU, split torch's threads among the workers while they run.

    Each worker already computes a whole batch, so the workers are the parallelism: letting every
    worker also fan out over all of torch's threads oversubscribes the cores (10-20 % more CPU time
    per clip on two cores). Restored afterwards. Torch's own kernels (framing, |X|^2, log) follow
    this setting in every thread; MKL's FFT and matrix products in the worker threads keep MKL's
    default instead, since its count is per thread. Setting it inside each worker as well was
    measured slower (1,316-1,354 against 1,373-1,393 clips/s): the spare MKL thread uses the time
    a worker spends waiting for the GIL.
    """
    if torch.device(device).type != "cpu" or workers <= 1:
        yield
        return
    with torch_threads(torch.get_num_threads() // workers):
        yield


def _in_order(fn: Callable[[T], R], items: list[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, results in order, at most ``workers + 1`` ahead.

    Each worker decodes and computes a whole batch, so one batch's decoding (libsndfile releases
    the GIL) overlaps another's compute (torch releases it too); the bound keeps memory flat.
    """
    if workers == 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="features")
    pending: deque[Future] = deque()
    todo = iter(items)
    try:
        for item in itertools.islice(todo, workers + 1):
            pending.append(pool.submit(fn, item))
        while pending:
            result = pending.popleft().result()
            for item in itertools.islice(todo, 1):
                pending.append(pool.submit(fn, item))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
