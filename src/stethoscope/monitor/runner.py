"""The monitor loop: scan the folder, score what is new, advance the rule, keep it all, alert.

Files are taken oldest first (mtime, then path), so a stream is the same sequence however the
monitor was stopped and restarted in between. Each recording is committed with the rule state it
produced before the next one is taken; alerts go to the sinks only after that commit, and an alert
committed by a monitor that died before telling anyone is told on the next start.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stethoscope.detector import Failure, Result
from stethoscope.monitor.rules import AlertRule, choose_rule
from stethoscope.monitor.sinks import Alert, AlertSink
from stethoscope.monitor.store import AlertRow, MonitorStore, Recording, StreamState
from stethoscope.monitor.watch import FileVersion, Watcher

if TYPE_CHECKING:
    from stethoscope.detector import Detector

log = logging.getLogger(__name__)


@dataclass
class PollSummary:
    """What one poll (or a whole run) did."""

    scored: int = 0
    failed: int = 0
    alerts: int = 0
    #: files left for a later poll (still being written, or over ``max_per_poll``)
    waiting: int = 0

    def add(self, other: PollSummary) -> None:
        self.scored += other.scored
        self.failed += other.failed
        self.alerts += other.alerts
        self.waiting = other.waiting  # what is left now, not a sum

    def line(self) -> str:
        parts = [f"{self.scored} scored", f"{self.failed} could not be scored"]
        parts.append(f"{self.alerts} alert(s)")
        if self.waiting:
            parts.append(f"{self.waiting} left for the next poll (being written or over the limit)")
        return ", ".join(parts)


class MonitorRunner:
    """Watches one folder for one machine (and section) with one model."""

    def __init__(
        self,
        detector: Detector,
        store: MonitorStore,
        watcher: Watcher,
        machine: str,
        section: str | None = None,
        *,
        rule: AlertRule | None = None,
        sinks: Sequence[AlertSink] = (),
        batch_size: int = 8,
        max_per_poll: int = 0,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.detector = detector
        self.store = store
        self.watcher = watcher
        self.machine = machine
        #: raises UnknownTarget for a machine or section the model does not have
        self.section = detector.resolve(machine, section)
        self.rule = rule or choose_rule(detector, machine, self.section)
        self.sinks = list(sinks)
        self.batch_size = max(1, int(batch_size))
        self.max_per_poll = max(0, int(max_per_poll))
        self.echo = echo
        self.watch = str(watcher.folder.resolve())
        self._done: set[tuple[str, int, int]] = set()

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> str:
        """Continue the saved stream when it belongs to this model and rule; says which it did.

        Alerts a previous monitor committed but did not get to tell are told now."""
        saved = self.store.load_state(self.watch, self.machine, self.section)
        what = f"{self.machine} section {self.section} in {self.watch}"
        if saved is None:
            message = f"new stream: {what}, rule {self.rule.name}"
        elif saved.model_id != self.detector.model_id:
            message = (
                f"model changed: the saved state of {what} belongs to model {saved.model_id} "
                f"({saved.n_clips} clips), this is model {self.detector.model_id}: the state is "
                "not reused, a new stream starts"
            )
        elif saved.rule != self.rule.name:
            message = (
                f"rule changed from {saved.rule} to {self.rule.name}: the saved state of {what} "
                "is not reused, a new stream starts"
            )
        else:
            try:
                self.rule.set_state(saved.arrays, saved.meta)
            except (ValueError, KeyError, TypeError) as exc:
                self.rule.reset()
                message = f"the saved state of {what} is unusable ({exc}): a new stream starts"
            else:
                status = "alerting" if self.rule.alerting else "quiet"
                message = (
                    f"continuing the stream of {what}: {self.rule.n_clips} clips so far, "
                    f"{status} (rule {self.rule.name})"
                )
        for row in self.store.unsent_alerts():
            if (row.watch, row.machine, row.section) == (self.watch, self.machine, self.section):
                self._deliver(row)
        return message

    # -- the loop ------------------------------------------------------------------------------

    def run(
        self, once: bool = False, poll: float = 5.0, stop: threading.Event | None = None
    ) -> PollSummary:
        """Poll until ``stop`` is set (or once); the totals of the run."""
        stop = stop or threading.Event()
        total = PollSummary()
        while not stop.is_set():
            total.add(self.poll_once(stop))
            if once or stop.wait(poll):
                break
        return total

    def poll_once(self, stop: threading.Event | None = None) -> PollSummary:
        """Score every new complete file (at most ``max_per_poll``), oldest first."""
        scan = self.watcher.scan(self._done)
        todo: list[tuple[FileVersion, str | None]] = []
        for version, reason in [(v, None) for v in scan.ready] + scan.truncated:
            if self.store.known(*version.key):
                self._done.add(version.key)
            else:
                todo.append((version, reason))
        todo.sort(key=lambda t: (t[0].mtime_ns, str(t[0].path)))
        summary = PollSummary(waiting=len(scan.waiting))
        if self.max_per_poll and len(todo) > self.max_per_poll:
            summary.waiting += len(todo) - self.max_per_poll
            todo = todo[: self.max_per_poll]
        for start in range(0, len(todo), self.batch_size):
            if stop is not None and stop.is_set():
                summary.waiting += len(todo) - start
                break
            batch = todo[start : start + self.batch_size]
            for version, reason in batch:
                if reason is not None:
                    self._commit_failure(version, reason, summary)
            self._score([v for v, reason in batch if reason is None], summary)
        return summary

    def _score(self, batch: list[FileVersion], summary: PollSummary) -> None:
        if not batch:
            return
        names = [str(v.path) for v in batch]
        inputs: dict[str, np.ndarray] | None = {} if self.rule.needs_inputs else None
        try:
            results, failures = self.detector.score_many(
                [v.path for v in batch], self.machine, self.section, names=names,
                batch_size=len(batch), keep_inputs=inputs,
            )  # fmt: skip
        except Exception as exc:  # not an unreadable file (those are failures): find the culprit
            if len(batch) > 1:
                for version in batch:
                    self._score([version], summary)
                return
            log.debug("scoring %s failed", names[0], exc_info=True)
            results, failures = [], [Failure(names[0], f"scoring failed: {exc!r}")]
        scored: dict[str, Result] = {r.file: r for r in results}
        reasons = {f.file: f.reason for f in failures}
        for version, name in zip(batch, names):
            if name in scored:
                views = inputs.get(name) if inputs is not None else None
                self._commit_result(version, scored[name], views, summary)
            else:
                self._commit_failure(version, reasons.get(name, "not scored"), summary)

    def _commit_result(
        self, version: FileVersion, result: Result, views: np.ndarray | None, summary: PollSummary
    ) -> None:
        before = self.rule.get_state()
        step = self.rule.step(result, views)
        recording = Recording(
            path=str(version.path), size=version.size, mtime_ns=version.mtime_ns,
            watch=self.watch, machine=self.machine, section=self.section,
            model_id=result.model_id, system=result.system, score=result.score,
            decision=result.decision, threshold=result.threshold, rule=self.rule.name,
            rule_value=step.value, rule_threshold=step.threshold, alerting=step.alerting,
            notes=result.notes,
        )  # fmt: skip
        arrays, meta = self.rule.get_state()
        state = StreamState(
            self.detector.model_id, self.rule.name, arrays, meta, self.rule.n_clips,
            self.rule.alerting,
        )  # fmt: skip
        alert = None
        if step.fired:
            alert = AlertRow(
                recording_id=0, watch=self.watch, machine=self.machine, section=self.section,
                model_id=self.detector.model_id, rule=self.rule.name, file=str(version.path),
                value=step.value, threshold=step.threshold, message=step.message,
            )  # fmt: skip
        try:
            self.store.record(recording, state, alert)
        except sqlite3.IntegrityError:  # recorded meanwhile (a monitor on another machine?)
            self.rule.set_state(*before)
            self._done.add(version.key)
            return
        except BaseException:
            self.rule.set_state(*before)
            raise
        self._done.add(version.key)
        summary.scored += 1
        flag = " ANOMALOUS" if result.decision else ""
        on = " ALERTING" if step.alerting else ""
        self.echo(
            f"{self._short(version.path)}: score {result.score:.4g} (threshold "
            f"{result.threshold:.4g}){flag}; {self.rule.name} {step.value:.4g}/"
            f"{step.threshold:.4g}{on}"
        )
        if alert is not None:
            summary.alerts += 1
            self._deliver(alert)

    def _commit_failure(self, version: FileVersion, reason: str, summary: PollSummary) -> None:
        recording = Recording(
            path=str(version.path), size=version.size, mtime_ns=version.mtime_ns,
            watch=self.watch, machine=self.machine, section=self.section,
            model_id=self.detector.model_id, system=self.detector.system, error=reason,
        )  # fmt: skip
        try:
            self.store.record(recording)
        except sqlite3.IntegrityError:
            pass
        else:
            summary.failed += 1
            self.echo(f"{self._short(version.path)}: not scored: {reason}")
        self._done.add(version.key)

    def _deliver(self, row: AlertRow) -> None:
        assert row.id is not None
        alert = Alert(
            id=row.id, raised_at=row.raised_at, machine=row.machine, section=row.section,
            model_id=row.model_id, rule=row.rule, file=row.file, value=row.value,
            threshold=row.threshold, message=row.message, watch=row.watch,
        )  # fmt: skip
        for sink in self.sinks:
            sink.send(alert)
        self.store.mark_sent(row.id)

    def _short(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.watch))
        except ValueError:
            return str(path)
