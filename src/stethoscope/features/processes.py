"""Feature extraction in this process and a pool of forked helper processes that stays alive.

Why processes: on CPU a clip's log-mel is a handful of calls that each hold the GIL briefly, and two
threads doing them lose a quarter or more of their time to each other (measured on the C-kernel
path and 2 cores: two threads 2,000-2,200 clips/s, two independent processes 4,000). Why a pool
that stays: forking a process with torch loaded, and the copy-on-write faults that follow, cost
50-70 ms a call, a third of what 231 clips take. Why shared buffers that are reused: results sent
pickled through a pipe cost the parent 0.12-0.2 ms a clip, and a fresh shared buffer per call costs
a page fault per 4 KiB (0.1 ms a clip here); a reused one is faulted in once.

``workers`` streams compute: this process and ``workers - 1`` helpers. Chunks of clips go to the
helpers, two in flight each, each chunk naming one of the helper's two shared buffers; the helper
computes the chunk into it, writes the cache entries itself, and answers with a small message (per
clip: rows, or the error; the warnings raised). Between looks at those answers this process
computes a chunk itself, straight into its place in the call's result array (private memory, where
numpy asks for huge pages), and copies the helpers' results there. A result that does not fit its
buffer comes back in the message. A helper that dies leaves its chunks to this process; the pool
is rebuilt on the next call.

Only on Linux (where ``fork`` is cheap and safe enough) and only on CPU; see :func:`usable`. What a
helper does once forked is in :mod:`stethoscope.features.helper`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import mmap
import os
import pickle
import signal
import sys
import threading
import time
import warnings
from collections import deque
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stethoscope import audio
from stethoscope.devices import torch_threads
from stethoscope.features import helper
from stethoscope.features.cache import FeatureCache
from stethoscope.features.registry import FeatureExtractor

log = logging.getLogger(__name__)

#: Clips per message between the parent and a helper.
CHUNK = 8
#: Chunks in flight per helper: one being computed while the parent copies the other out.
IN_FLIGHT = 2
#: Bytes of each helper's shared result buffers (one per chunk in flight): 8 clips of up to 50 s
#: each; a clip that does not fit comes back through the pipe instead.
SLOT_BYTES = 8 << 20
#: Environment variables a helper takes from the parent with every job (they change the numbers
#: or the route, and a pool forked earlier would otherwise keep the values of that moment).
_ENV = ("STETHOSCOPE_NATIVE",)

OnResult = Callable[[int, "np.ndarray | None", "audio.AudioError | None"], None]


def usable(extractor: FeatureExtractor, n_clips: int, workers: int) -> bool:
    """Whether the pool applies: Linux, >= 2 streams and cores, >= 2 chunks of clips, a bounded
    layout."""
    if sys.platform != "linux" or workers < 2 or n_clips < 2 * CHUNK:
        return False
    if len(os.sched_getaffinity(0)) < 2:  # one core: a helper would only take turns with us
        return False
    if os.environ.get("STETHOSCOPE_FEATURE_PROCESSES", "1") == "0":
        return False
    return extractor.storage_layout(0) is not None


def run(paths: Sequence[str | Path], extractor: FeatureExtractor, workers: int, store: FeatureCache,
        ids: dict[int, str], indices: Sequence[int], on_result: OnResult) -> list[int]:
    """Compute ``paths[i]`` for ``i`` in ``indices`` here and in ``workers - 1`` helpers.

    ``on_result(i, stored, error)`` is called here for each clip as reports arrive, with the
    stored-form array (e.g. the (T, n_mels) log-mel, a view of one shared result array) or the
    file's :class:`~stethoscope.audio.AudioError`; an exception it raises propagates (the pool is
    then discarded, since its helpers may still be busy). Returns the indices nobody computed
    (none, unless another thread is using the pool: then all of them, for the caller to compute).
    """
    if not indices:
        return []
    dim = extractor.storage_layout(0)[1]
    # A slot never outgrows a helper's buffer: a longer result (a long recording, a big file that
    # is not audio) comes back whole instead of reserving room here.
    cap = SLOT_BYTES // (4 * dim)
    rows = []
    for i in indices:
        try:
            size = os.stat(paths[i]).st_size
        except OSError:
            size = 0  # the helper reports the file's real problem
        rows.append(min(extractor.storage_layout(size)[0], cap))
    offsets = np.zeros(len(indices) + 1, np.int64)
    np.cumsum(rows, out=offsets[1:])
    offsets *= dim
    dest = np.empty(int(offsets[-1]), np.float32)  # numpy asks for huge pages: few faults
    chunks = deque(
        [(j, os.fspath(paths[indices[j]]), ids.get(indices[j]), rows[j])
         for j in range(s, min(s + CHUNK, len(indices)))]
        for s in range(0, len(indices), CHUNK))
    job = {"extractor": extractor, "cache": str(store.root) if store.enabled else None,
           "env": {k: os.environ.get(k) for k in _ENV}}
    try:
        pickle.dumps(job)
    except Exception:  # noqa: BLE001 - an extractor that cannot travel is computed here
        return list(indices)
    reported = np.zeros(len(indices), bool)

    def emit(j: int, array: np.ndarray | None, error: str | None) -> None:
        reported[j] = True
        on_result(indices[j], array,
                  None if error is None else audio.AudioError(paths[indices[j]], error))

    def compute_here(chunk: list) -> None:
        """A chunk computed in this process, straight into its place in ``dest``."""
        for j, path, identity, rows in chunk:
            place = dest[int(offsets[j]):int(offsets[j + 1])].reshape(rows, dim)
            n_rows, error, whole = helper.compute_one(path, place, extractor, store, identity)
            emit(j, None if error else whole if whole is not None else place[:n_rows], error)

    if not _busy.acquire(blocking=False):  # another thread is using the pool: compute here
        return list(indices)
    try:
        with torch_threads(1):  # this process is one of the ``workers`` streams
            try:
                pool = _Pool.get(workers - 1, extractor)
            except OSError as exc:  # no processes to be had (limits, memory): compute here
                log.warning("feature helpers could not start (%s); computing in-process", exc)
                return list(indices)
            pool.run(job, chunks, dest, offsets, dim, emit, compute_here)
    except BaseException:
        _Pool.discard()  # its helpers may still be busy with chunks nobody will read
        raise
    finally:
        _busy.release()
    return [indices[j] for j in np.flatnonzero(~reported)]


_busy = threading.Lock()  # one job at a time: the helpers' pipes carry one conversation each
#: Seconds a helper may hold chunks without answering before it is taken for hung and stopped
#: (a chunk is 8 clips: milliseconds for DCASE clips, seconds for long recordings).
HANG_SECONDS = 300.0


class _Helper:
    """One forked helper: its process id, the two pipes and its shared result buffers."""

    def __init__(self, pid: int, results: Connection, jobs: Connection,
                 slots: list[np.ndarray]) -> None:
        self.pid, self.results, self.jobs, self.slots = pid, results, jobs, slots
        self.exited = False

    def alive(self) -> bool:
        if not self.exited:
            try:
                self.exited = os.waitpid(self.pid, os.WNOHANG)[0] != 0
            except ChildProcessError:
                self.exited = True
        return not self.exited

    def stop(self, grace: float = 1.0) -> None:
        """Close its pipes (it exits at the end of its chunk) and reap it, killing it if need be."""
        self.results.close()
        self.jobs.close()
        deadline = time.monotonic() + grace
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.exited = True


class _Pool:
    """Helper processes forked with ``os.fork`` (so that nothing but this module manages them:
    multiprocessing would count them as children of any process forked from this one later)."""

    _current: _Pool | None = None
    _lock = threading.Lock()

    def __init__(self, helpers: int, extractor: FeatureExtractor) -> None:
        # Tables built here are inherited; a later job with another configuration builds its
        # own in each helper (for log-mel: importing librosa for the filterbank, once).
        extractor.prepare()
        self.broken = False
        self.helpers: list[_Helper] = []
        try:
            for _ in range(helpers):
                self._start_one()
        except BaseException:
            self.close()
            raise

    def _start_one(self) -> None:
        # Shared, reused result buffers: their pages are faulted in once per pool, not per clip,
        # and this process copies each result out with one memcpy (no pipe, no pickle).
        slots = [np.frombuffer(mmap.mmap(-1, SLOT_BYTES), np.float32) for _ in range(IN_FLIGHT)]
        job_r, job_w = Pipe(duplex=False)
        res_r, res_w = Pipe(duplex=False)
        ours = [job_w, res_r] + [c for h in self.helpers for c in (h.jobs, h.results)]
        pid = os.fork()
        if pid == 0:  # the helper: never returns into the caller's code
            try:
                for conn in ours:  # so that each helper sees EOF as soon as this process goes
                    conn.close()
                helper.serve(job_r, res_w, slots)
            finally:
                os._exit(0)
        job_r.close()
        res_w.close()
        self.helpers.append(_Helper(pid, res_r, job_w, slots))

    @classmethod
    def get(cls, helpers: int, extractor: FeatureExtractor) -> _Pool:
        with cls._lock:
            pool = cls._current
            if pool is None or pool.broken or len(pool.helpers) != helpers or not all(
                    h.alive() for h in pool.helpers):
                if pool is not None:
                    pool.close()
                cls._current = None
                pool = cls._current = _Pool(helpers, extractor)
            return pool

    @classmethod
    def discard(cls) -> None:
        with cls._lock:
            if cls._current is not None:
                cls._current.close()
                cls._current = None

    def close(self) -> None:
        for h in self.helpers:
            h.stop()

    def run(self, job: dict, chunks: deque, dest: np.ndarray, offsets: np.ndarray, dim: int,
            emit: Callable[[int, np.ndarray | None, str | None], None],
            compute_here: Callable[[list], None]) -> None:
        """Hand out ``chunks``, computing one here between looks at the helpers' answers.

        The chunks a helper held when it died (or hung) go back on the queue, for this process.
        """
        by_conn = {h.results: h for h in self.helpers}
        free = {c: list(range(IN_FLIGHT)) for c in by_conn}  # idle buffers per helper
        held: dict[Connection, dict[int, list]] = {c: {} for c in by_conn}
        live = list(by_conn)

        def lost(conn: Connection) -> None:
            """A helper that died, hung or closed its pipe: its chunks are ours now."""
            live.remove(conn)
            self.broken = True
            chunks.extend(held[conn].values())
            held[conn].clear()
            by_conn[conn].stop(grace=0.0)

        told: set[Connection] = set()  # helpers that have this call's job already

        def feed(conn: Connection) -> None:
            while chunks and free[conn]:
                slot_id = free[conn].pop()
                held[conn][slot_id] = chunks.popleft()
                try:  # the job (extractor, cache, environment) travels once per helper and call
                    by_conn[conn].jobs.send(
                        (None if conn in told else job, slot_id, held[conn][slot_id]))
                    told.add(conn)
                except OSError:  # it died since its last answer
                    lost(conn)
                    return

        def answer(conn: Connection) -> None:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                lost(conn)
                return
            if isinstance(msg, str):  # a bug in the helper: surface it, do not hide it
                raise RuntimeError(f"feature helper failed:\n{msg}")
            slot_id, items, caught = msg
            for category, text in caught:
                warnings.warn(text, category, stacklevel=5)
            slot = by_conn[conn].slots[slot_id]
            for j, rows, error, array, at in items:
                if error is None and array is None:  # the rows are in the shared buffer
                    flat = dest[int(offsets[j]):int(offsets[j]) + rows * dim]
                    flat[:] = slot[at:at + rows * dim]
                    array = flat.reshape(rows, dim)
                emit(j, array, error)
            del held[conn][slot_id]
            free[conn].append(slot_id)  # copied out: the helper may reuse it
            feed(conn)

        for conn in list(live):
            feed(conn)
        while chunks or any(held[c] for c in live):
            busy = [c for c in live if held[c]]
            ready = wait(busy, timeout=0 if chunks else HANG_SECONDS) if busy else []
            if busy and not ready and not chunks:  # nobody answered for HANG_SECONDS
                for conn in busy:
                    log.warning("feature helper %d gave no answer for %.0f s; stopping it",
                                by_conn[conn].pid, HANG_SECONDS)
                    lost(conn)
            for conn in ready:
                if conn in live:
                    answer(conn)
            if chunks:
                compute_here(chunks.popleft())


def helper_pids() -> list[int]:
    """Process ids of the live pool's helpers (none before first use): for CPU accounting."""
    pool = _Pool._current
    return [h.pid for h in pool.helpers if h.alive()] if pool is not None else []


@atexit.register
def _shutdown() -> None:
    _Pool.discard()


def _after_fork_in_child() -> None:
    """A process forked from this one (by anyone) starts without a pool and with a free lock."""
    global _busy
    _Pool._current = None
    _Pool._lock = threading.Lock()
    _busy = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
