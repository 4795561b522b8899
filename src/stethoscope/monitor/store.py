"""The monitor's memory: one SQLite file of recordings, alerts and each stream's rule state.

A recording's result and the state of the rule it advanced are written in one transaction, so a
monitor killed at any instant leaves both or neither: on restart nothing is scored twice (a file
version, path + size + mtime, is unique) and the rule continues from the last clip it saw. WAL mode
lets a report be drawn while the monitor writes. Arrays (a DtMM mixture) are kept as safetensors
bytes, so reading the file never runs code.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from stethoscope.errors import StethoscopeError

#: "STMN" in PRAGMA application_id: a database this module created
APPLICATION_ID = 0x53544D4E
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    watch TEXT NOT NULL,
    machine TEXT NOT NULL,
    section TEXT NOT NULL,
    model_id TEXT NOT NULL,
    system TEXT NOT NULL,
    scored_at TEXT NOT NULL,
    score REAL,
    decision INTEGER,
    threshold REAL,
    rule TEXT,
    rule_value REAL,
    rule_threshold REAL,
    alerting INTEGER,
    notes TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    UNIQUE (path, size, mtime_ns)
);
CREATE INDEX IF NOT EXISTS recordings_by_stream ON recordings (watch, machine, section, id);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    recording_id INTEGER NOT NULL REFERENCES recordings (id),
    raised_at TEXT NOT NULL,
    watch TEXT NOT NULL,
    machine TEXT NOT NULL,
    section TEXT NOT NULL,
    model_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    file TEXT NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL,
    message TEXT NOT NULL,
    sent_at TEXT
);
CREATE TABLE IF NOT EXISTS state (
    watch TEXT NOT NULL,
    machine TEXT NOT NULL,
    section TEXT NOT NULL,
    model_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    arrays BLOB NOT NULL,
    meta TEXT NOT NULL,
    n_clips INTEGER NOT NULL,
    alerting INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (watch, machine, section)
);
"""


class MonitorDBError(StethoscopeError):
    """A database file the monitor cannot use (another program's, unreadable, or in use)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Recording:
    """One row of ``recordings``: a scored file version, or one that could not be scored."""

    path: str
    size: int
    mtime_ns: int
    watch: str
    machine: str
    section: str
    model_id: str
    system: str
    score: float | None = None
    decision: int | None = None
    threshold: float | None = None
    rule: str | None = None
    rule_value: float | None = None
    rule_threshold: float | None = None
    alerting: bool | None = None
    notes: tuple[str, ...] = ()
    #: why it could not be scored (None: it was)
    error: str | None = None
    scored_at: str = field(default_factory=now_iso)
    id: int | None = None


@dataclass
class StreamState:
    """Where a stream's alert rule stands after its latest clip."""

    model_id: str
    rule: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    n_clips: int
    alerting: bool


@dataclass
class AlertRow:
    """One row of ``alerts`` (``sent_at`` None: not yet handed to the sinks)."""

    recording_id: int
    watch: str
    machine: str
    section: str
    model_id: str
    rule: str
    file: str
    value: float
    threshold: float
    message: str
    raised_at: str = field(default_factory=now_iso)
    sent_at: str | None = None
    id: int | None = None


_RECORDING_COLUMNS = (
    "path", "size", "mtime_ns", "watch", "machine", "section", "model_id", "system", "scored_at",
    "score", "decision", "threshold", "rule", "rule_value", "rule_threshold", "alerting", "notes",
    "error",
)  # fmt: skip
_ALERT_COLUMNS = (
    "recording_id", "raised_at", "watch", "machine", "section", "model_id", "rule", "file",
    "value", "threshold", "message", "sent_at",
)  # fmt: skip


class MonitorStore:
    """The monitor's SQLite file; ``read_only`` opens it for a report while a monitor writes."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.is_file():
            raise MonitorDBError(f"{self.path}: no such monitor database")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect()
            self._check_or_create()
        except sqlite3.DatabaseError as exc:
            raise MonitorDBError(f"{self.path}: not a usable SQLite database ({exc})") from exc

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10.0)
        else:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        db.row_factory = sqlite3.Row
        return db

    def _check_or_create(self) -> None:
        app = self._db.execute("PRAGMA application_id").fetchone()[0]
        tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app != APPLICATION_ID and (app != 0 or tables):
            raise MonitorDBError(
                f"{self.path} is not a Stethoscope monitor database (another program's SQLite "
                "file?): not touched; give another --db"
            )
        if app == APPLICATION_ID:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise MonitorDBError(
                    f"{self.path}: monitor database version {version}, this Stethoscope reads "
                    f"version {SCHEMA_VERSION}"
                )
        if self.read_only:
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed result survives a power cut too, not only a killed process
        self._db.execute("PRAGMA synchronous=FULL")
        if app == 0:
            with self.transaction():  # executescript would commit on its own
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    # -- writing -------------------------------------------------------------------------------

    def known(self, path: str, size: int, mtime_ns: int) -> bool:
        """Whether this version of a file has a row already (scored, or recorded as bad)."""
        row = self._db.execute(
            "SELECT 1 FROM recordings WHERE path = ? AND size = ? AND mtime_ns = ?",
            (path, size, mtime_ns),
        ).fetchone()
        return row is not None

    def record(
        self,
        recording: Recording,
        state: StreamState | None = None,
        alert: AlertRow | None = None,
    ) -> tuple[int, int | None]:
        """Write a recording, the stream state after it and the alert it raised, all or none.

        Returns (recording id, alert id or None). A file version recorded before raises
        :class:`sqlite3.IntegrityError` and changes nothing.
        """
        state_blob = save_arrays(_contiguous(state.arrays)) if state is not None else b""
        with self.transaction() as db:
            values = _recording_values(recording)
            cur = db.execute(
                f"INSERT INTO recordings ({', '.join(_RECORDING_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_RECORDING_COLUMNS))})",
                values,
            )
            rec_id = int(cur.lastrowid or 0)
            if state is not None:
                db.execute(
                    "INSERT OR REPLACE INTO state (watch, machine, section, model_id, rule, arrays, "
                    "meta, n_clips, alerting, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        recording.watch, recording.machine, recording.section, state.model_id,
                        state.rule, state_blob, json.dumps(state.meta), int(state.n_clips),
                        int(state.alerting), recording.scored_at,
                    ),
                )  # fmt: skip
            alert_id = None
            if alert is not None:
                alert.recording_id = rec_id
                cur = db.execute(
                    f"INSERT INTO alerts ({', '.join(_ALERT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_ALERT_COLUMNS))})",
                    tuple(getattr(alert, c) for c in _ALERT_COLUMNS),
                )
                alert_id = int(cur.lastrowid or 0)
                alert.id = alert_id
        recording.id = rec_id
        return rec_id, alert_id

    def mark_sent(self, alert_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE alerts SET sent_at = ? WHERE id = ?", (now_iso(), alert_id))

    # -- reading -------------------------------------------------------------------------------

    def load_state(self, watch: str, machine: str, section: str) -> StreamState | None:
        row = self._db.execute(
            "SELECT * FROM state WHERE watch = ? AND machine = ? AND section = ?",
            (watch, machine, section),
        ).fetchone()
        if row is None:
            return None
        return StreamState(
            model_id=row["model_id"],
            rule=row["rule"],
            arrays=dict(load_arrays(bytes(row["arrays"]))),
            meta=json.loads(row["meta"]),
            n_clips=int(row["n_clips"]),
            alerting=bool(row["alerting"]),
        )

    def recordings(self, where: str = "", params: tuple[Any, ...] = ()) -> list[Recording]:
        """Rows of ``recordings`` in the order they were written (``where``: an SQL condition)."""
        sql = "SELECT * FROM recordings" + (f" WHERE {where}" if where else "") + " ORDER BY id"
        return [_recording_from_row(r) for r in self._db.execute(sql, params)]

    def alerts(self, where: str = "", params: tuple[Any, ...] = ()) -> list[AlertRow]:
        sql = "SELECT * FROM alerts" + (f" WHERE {where}" if where else "") + " ORDER BY id"
        return [
            AlertRow(**{k: r[k] for k in (*_ALERT_COLUMNS, "id")})
            for r in self._db.execute(sql, params)
        ]

    def unsent_alerts(self) -> list[AlertRow]:
        """Alerts committed by a monitor that stopped before telling anyone."""
        return self.alerts("sent_at IS NULL")


def _contiguous(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def _recording_values(r: Recording) -> tuple[Any, ...]:
    values = {c: getattr(r, c) for c in _RECORDING_COLUMNS}
    values["notes"] = json.dumps(list(r.notes))
    values["alerting"] = None if r.alerting is None else int(r.alerting)
    return tuple(values[c] for c in _RECORDING_COLUMNS)


def _recording_from_row(row: sqlite3.Row) -> Recording:
    values = {c: row[c] for c in _RECORDING_COLUMNS}
    values["notes"] = tuple(json.loads(values["notes"] or "[]"))
    values["alerting"] = None if values["alerting"] is None else bool(values["alerting"])
    return Recording(**values, id=row["id"])


@contextlib.contextmanager
def exclusive(db_path: str | Path) -> Iterator[None]:
    """Hold ``<db>.lock`` (an OS lock, gone with the process, even after SIGKILL): two monitors
    feeding one database would each advance the rule state on half of the clips."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: the UNIQUE constraint still holds
        yield
        return
    lock_path = Path(f"{db_path}.lock")
    fh: IO[str] = open(lock_path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "?"
            raise MonitorDBError(
                f"{db_path} is in use by another monitor (pid {owner}); stop it first or give "
                "another --db"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()
