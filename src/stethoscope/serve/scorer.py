"""One thread per process does all the scoring; the event loop only takes requests.

A :class:`~stethoscope.detector.Detector` is not thread-safe (its torch models are not), so the
scoring of one process runs on a single thread, fed by a queue. Recordings that arrive while the
thread is busy and are for the same machine, section and domain are then scored together in one
:meth:`~stethoscope.detector.Detector.score_many` call: the features and the network run once for
the batch, which costs less per recording than one call each. A lone request is scored at once,
never held back to wait for company.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stethoscope.audio import AudioError
from stethoscope.detector import Detector, Failure, Result

log = logging.getLogger("stethoscope.serve")

#: a recording in memory and the name it goes by in messages and results
Upload = tuple[bytes, str]
#: the length of the warm-up recording: that of a DCASE clip
WARM_UP_SECONDS = 10


@dataclass
class _Job:
    uploads: Sequence[Upload]
    target: tuple[str, str, str | None]  # machine, resolved section, domain
    #: merged with other single-recording jobs for the same target
    single: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[Result | Failure]]
    queued: float


class Scorer:
    """Scores uploads on its own thread; :meth:`score_many` awaits the outcome."""

    def __init__(self, detector: Detector, max_batch: int = 8, torch_threads: int = 1) -> None:
        self.detector = detector
        self.max_batch = max(1, max_batch)
        self._torch_threads = torch_threads
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="stethoscope-scorer", daemon=True)
        self._thread.start()

    async def score(self, upload: Upload, machine: str, section: str, domain: str | None) -> Result:
        """One recording's result (its wait in the queue in ``timings["queue_ms"]``);
        :class:`AudioError` naming it if it cannot be scored."""
        (outcome,) = await self.score_many([upload], machine, section, domain, single=True)
        if isinstance(outcome, Failure):
            raise AudioError(outcome.file, outcome.reason)
        return outcome

    async def score_many(
        self,
        uploads: Sequence[Upload],
        machine: str,
        section: str,
        domain: str | None,
        *,
        single: bool = False,
    ) -> list[Result | Failure]:
        """Each recording's result, or its failure (by name, with the reason), in upload order."""
        loop = asyncio.get_running_loop()
        job = _Job(
            uploads, (machine, section, domain), single, loop, loop.create_future(),
            time.perf_counter(),
        )  # fmt: skip
        self._queue.put(job)
        return await job.future

    def close(self) -> None:
        """Stop the thread once the jobs already queued are done."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    # -- the scoring thread -------------------------------------------------------------------

    def _run(self) -> None:
        import torch

        torch.set_num_threads(self._torch_threads)
        self._warm_up()
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            while job.single and len(jobs) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                jobs.append(more)
            for group in _groups(jobs):
                self._score(group)

    def _warm_up(self) -> None:
        """Score ten seconds of faint noise once, so that the first request does not pay for
        torch's and the FFT's first-call set-up (hundreds of milliseconds)."""
        det = self.detector
        try:
            machine = det.machines()[0]
            rate = int(det.describe()["sample_rate"])
            noise = np.random.default_rng(0).normal(0, 0.01, WARM_UP_SECONDS * rate)
            det.score(noise.astype(np.float32), machine, det.sections(machine)[0],
                      sample_rate=rate, name="<warm-up>")  # fmt: skip
        except Exception:  # the service still answers; the first request is just slower
            log.warning("warm-up scoring failed", exc_info=True)

    def _score(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        sources = [data for job in jobs for data, _ in job.uploads]
        labels = [f"#{i}" for i in range(len(sources))]
        machine, section, domain = jobs[0].target
        try:
            results, failures = self.detector.score_many(
                sources, machine, section, domain, names=labels, on_error="skip"
            )
        except Exception as exc:  # a bug: every waiting request gets it
            for job in jobs:
                job.loop.call_soon_threadsafe(_settle_error, job.future, exc)
            return
        by_label = {r.file: r for r in results}
        failed = {f.file: f.reason for f in failures}
        labels_left = iter(labels)
        for job in jobs:
            wait = 1e3 * (started - job.queued)
            outcomes: list[Result | Failure] = []
            for _, name in job.uploads:
                label = next(labels_left)
                if label in by_label:
                    timings = {**by_label[label].timings, "queue_ms": wait}
                    outcomes.append(
                        dataclasses.replace(by_label[label], file=name, timings=timings)
                    )
                else:
                    outcomes.append(Failure(name, failed.get(label, "not scored")))
            job.loop.call_soon_threadsafe(_settle, job.future, outcomes)


def _groups(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs in arrival order, the single recordings for one target gathered together."""
    groups: dict[object, list[_Job]] = {}
    for n, job in enumerate(jobs):
        groups.setdefault(job.target if job.single else n, []).append(job)
    return list(groups.values())


def _settle(future: asyncio.Future, value: object) -> None:
    if not future.done():  # the request may have been cancelled (client gone)
        future.set_result(value)


def _settle_error(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
