"""Features of many clips: cache look-up, then the misses computed in parallel.

Cached features are not read here: the result holds each one as its cache entry, read (memory-
mapped) when a caller asks for it (:class:`~stethoscope.features.stored.StoredFeatures`), so a
training set larger than memory can be used. The misses go in batches to a thread pool
(:func:`~stethoscope.prefetch.ordered_map`): each thread decodes its batch (libsndfile), computes
it (torch) and writes it to the cache, after which only the entry's path is kept. Both libraries
release the GIL while they work, so the threads run in parallel without the start-up and copying
costs of worker processes. Only ``workers + 1`` batches are in flight, which keeps memory flat. A
bad file is one line in ``failures`` (file + reason) and the other clips go on, unless the caller
asked to stop.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from stethoscope import SAMPLE_RATE, audio
from stethoscope.devices import torch_threads
from stethoscope.features.base import FeatureExtractor
from stethoscope.features.cache import FeatureCache, clip_identity
from stethoscope.features.stored import Held, StoredFeatures
from stethoscope.prefetch import ordered_map
from stethoscope.progress import Progress

OnError = Literal["skip", "stop"]
#: A batch's outcome: (clip index, feature or its cache entry) for the clips that worked, (index,
#: error) for the rest, (index, note) for what reading them noticed.
Outcome = tuple[list[tuple[int, Held]], list[tuple[int, audio.AudioError]], list[tuple[int, str]]]


@dataclass
class ExtractResult:
    """Features aligned with ``clips`` (the clips that succeeded, in input order); cached ones are
    read from the cache when indexed (:class:`StoredFeatures`)."""

    clips: list[Any]
    features: Sequence[np.ndarray]
    failures: list[tuple[Path, str]] = field(default_factory=list)
    #: (file, note) for clips that needed something done (mixed down, resampled) or are silent
    notes: list[tuple[Path, str]] = field(default_factory=list)
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


def extract(
    clips: Sequence[Any],
    extractor: FeatureExtractor,
    cache: FeatureCache | str | Path | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    on_error: OnError = "skip",
    progress: Progress | None = None,
    workers: int = 2,
) -> ExtractResult:
    """Features of ``clips`` with ``extractor``, from ``cache`` where it has them.

    ``batch_size`` is the most clips decoded and computed together (on CPU, batches are made
    smaller where that gives each of the ``workers`` threads several of them). ``progress`` is
    called as ``progress("features (<name>)", done, total, {})``. On CPU, torch's thread count is
    divided among the workers during the call and restored afterwards.
    """
    if on_error not in ("skip", "stop"):
        raise ValueError(f"on_error must be 'skip' or 'stop', not {on_error!r}")
    start = time.perf_counter()
    store = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
    stage = f"features ({extractor.name})"
    total = len(clips)
    feats: dict[int, Held] = {}
    failed: dict[int, tuple[Path, str]] = {}
    noted: list[tuple[int, str]] = []
    ids: dict[int, str] = {}

    def report() -> None:
        if progress is not None:
            progress(stage, len(feats) + len(failed), total, {})

    def fail(i: int, err: audio.AudioError) -> None:
        if on_error == "stop":
            raise err
        failed[i] = (err.path, err.reason)

    misses: list[int] = []
    for i, clip in enumerate(clips):
        if store.enabled:
            try:
                ids[i] = clip_identity(getattr(clip, "path", clip))
            except OSError as exc:
                fail(i, audio.AudioError(clip_path(clip), _stat_reason(exc)))
                continue
            hit = store.load(extractor, ids[i])  # checked, then let go: read again when used
            if hit is not None:
                feats[i] = store.entry_str(extractor, ids[i])
                noted += [(i, note) for note in store.load_notes(extractor, ids[i])]
                continue
        misses.append(i)
    n_cached = len(feats)
    if feats or failed:
        report()

    sample_rate = getattr(extractor.config, "sample_rate", SAMPLE_RATE)
    channel = getattr(extractor.config, "channel", "mix")

    def job(batch: list[int]) -> Outcome:
        """Decode, compute and cache one batch (runs in a worker thread)."""
        waves: list[tuple[int, np.ndarray]] = []
        bad: list[tuple[int, audio.AudioError]] = []
        notes: dict[int, list[str]] = {}
        for i in batch:
            try:
                read = audio.read_audio(clip_path(clips[i]), sample_rate, channel=channel)
            except audio.AudioError as err:
                bad.append((i, err))
                continue
            waves.append((i, read.samples))
            if read.notes:
                notes[i] = read.notes
        out = extractor.compute_batch([w for _, w in waves], device) if waves else []
        done: list[tuple[int, Held]] = []
        for (i, _), f in zip(waves, out, strict=True):
            kept = store.enabled and store.store(
                extractor, ids[i], extractor.to_storage(f), notes.get(i, [])
            )
            done.append((i, store.entry_str(extractor, ids[i]) if kept else f))
        return done, bad, [(i, n) for i, ns in notes.items() for n in ns]

    on_cpu = torch.device(device).type == "cpu"
    n_workers = max(1, workers)
    size = max(1, batch_size)
    if on_cpu:  # several batches per worker, so that none of them waits for the last one alone
        size = min(size, max(1, math.ceil(len(misses) / (4 * n_workers))))
    batches = [misses[s : s + size] for s in range(0, len(misses), size)]
    n_workers = min(n_workers, max(1, len(batches)))
    # Each worker thread is one stream of work: torch's own threads are split among them on CPU.
    threads = max(1, torch.get_num_threads() // n_workers) if on_cpu and n_workers > 1 else None
    results = ordered_map(job, batches, n_workers, name="features")
    with torch_threads(threads), contextlib.closing(results):
        for done, bad, batch_notes in results:
            for i, err in bad:
                fail(i, err)
            feats.update(done)
            noted += batch_notes
            report()

    ok = sorted(feats)
    return ExtractResult(
        clips=[clips[i] for i in ok],
        features=StoredFeatures([feats[i] for i in ok], extractor.from_storage),
        failures=[failed[i] for i in sorted(failed)],
        notes=[(clip_path(clips[i]), note) for i, note in sorted(noted, key=lambda n: n[0])],
        seconds=time.perf_counter() - start,
        n_cached=n_cached,
        n_computed=len(feats) - n_cached,
    )


def _stat_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file does not exist"
    return f"cannot read file ({exc.strerror or exc})"
