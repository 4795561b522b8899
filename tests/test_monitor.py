"""`stethoscope monitor`: a folder watched over time with real models, real WAVs, a real SQLite file."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from stethoscope.cli import main
from stethoscope.data import Catalog
from stethoscope.detector import Detector, Result
from stethoscope.monitor.report import GENERATOR
from stethoscope.monitor.rules import KOfN, MixtureEvolution
from stethoscope.monitor.sinks import Alert, WebhookSink
from stethoscope.monitor.store import (
    MonitorDBError,
    MonitorStore,
    Recording,
    StreamState,
    exclusive,
)
from stethoscope.monitor.watch import Watcher, is_candidate
from stethoscope.pipeline.fit import fit_systems
from stethoscope.synth import generate_dataset
from stethoscope.systems import get_system

MACHINES = ["fan", "valve"]
SR = 16000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A tiny dataset, and an AE-MSE and a CNN-DtMM model trained on it."""
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, seed=5, scale=0.02, duration=2.0, machines=MACHINES, workers=1)
    cnn_dtmm = get_system("cnn-dtmm").with_frontend_params(epochs=1, batch_size=16, n_views=2)
    configs = [get_system("ae-mse").with_frontend_params(epochs=2), cnn_dtmm]
    models = {c.name: root.parent / f"model-{c.name}" for c in configs}
    fit_systems(
        Catalog.scan(root), configs, save_to=lambda c: models[c.name], cache_dir=root.parent / "c"
    )
    return root, models


def _clips(root: Path, split: str = "test") -> list[Path]:
    return sorted((root / "dev_data" / "raw" / "fan" / split).glob("*.wav"))


def _place(folder: Path, sources: list[Path], start: int = 0) -> list[Path]:
    """Copy ``sources`` into ``folder`` (two sub-folders) as a stream: mtimes one second apart,
    ten minutes ago, so the order is fixed and every file has settled."""
    base = time.time_ns() - 600 * 10**9
    out = []
    for i, src in enumerate(sources, start=start):
        dst = folder / f"day{i % 2}" / f"rec_{i:03d}.wav"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
        os.utime(dst, ns=(base + i * 10**9, base + i * 10**9))
        out.append(dst)
    return out


def _rows(db: Path, sql: str = "SELECT * FROM recordings ORDER BY id") -> list[sqlite3.Row]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.row_factory = sqlite3.Row
        return con.execute(sql).fetchall()


def _monitor(*args: object) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["monitor", *[str(a) for a in args], "--device", "cpu"])
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def _result(decision: int, i: int = 0) -> Result:
    return Result(f"c{i}.wav", "fan", "00", None, float(decision), decision, 0.5, "s", "m")


# -- the k-of-n rule ---------------------------------------------------------------------------


def test_k_of_n_fires_on_k_high_clips_not_on_one_odd_clip():
    decisions = [0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1]
    rule = KOfN(k=3, n=5)
    steps = [rule.step(_result(d, i)) for i, d in enumerate(decisions)]
    # one odd clip (2) never alerts; the third of three high clips in a row (9) fires once, the
    # rule stays on without firing again and goes quiet; 3 of 5 scattered high clips fire (20)
    assert [i for i, s in enumerate(steps) if s.fired] == [9, 20]
    assert [i for i, s in enumerate(steps) if s.alerting] == [9, 10, 11, 12, 20]
    assert steps[9].value == 3 and steps[9].threshold == 3 and "3 of the last 5" in steps[9].message
    # the saved state continues the stream exactly
    rule2 = KOfN(k=3, n=5)
    rule = KOfN(k=3, n=5)
    for i, d in enumerate(decisions[:10]):
        rule.step(_result(d, i))
    rule2.set_state(*rule.get_state())
    rest = [(rule2.step(_result(d)).fired, rule2.alerting) for d in decisions[10:]]
    assert rest == [(s.fired, s.alerting) for s in steps[10:]]
    with pytest.raises(ValueError, match="k <= n"):
        KOfN(k=4, n=3)


# -- the database ------------------------------------------------------------------------------


def test_result_and_state_are_written_together_or_not_at_all(tmp_path):
    store = MonitorStore(tmp_path / "m.sqlite")
    rec = Recording("/w/a.wav", 10, 5, "/w", "fan", "00", "id1", "ae-mse", score=1.0)
    state_a = StreamState("id1", "k-of-n", {}, {"window": [1]}, 1, False)
    store.record(rec, state_a)
    again = Recording("/w/a.wav", 10, 5, "/w", "fan", "00", "id1", "ae-mse", score=9.0)
    state_b = StreamState("id1", "k-of-n", {"x": np.ones(3)}, {"window": [1, 1]}, 2, True)
    from stethoscope.monitor.store import AlertRow

    alert = AlertRow(0, "/w", "fan", "00", "id1", "k-of-n", "/w/a.wav", 2.0, 3.0, "m")
    with pytest.raises(sqlite3.IntegrityError):
        store.record(again, state_b, alert)  # the same file version: nothing of it is kept
    saved = store.load_state("/w", "fan", "00")
    assert saved is not None and saved.meta == {"window": [1]} and saved.n_clips == 1
    assert [r.score for r in store.recordings()] == [1.0] and store.alerts() == []
    store.close()
    assert _rows(tmp_path / "m.sqlite", "PRAGMA journal_mode")[0][0] == "wal"
    # another program's SQLite file, or not SQLite at all, is refused untouched
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(MonitorDBError, match="not a Stethoscope monitor database"):
        MonitorStore(other)
    (tmp_path / "notes.sqlite").write_text("hello " * 200)
    with pytest.raises(MonitorDBError, match="not a usable SQLite"):
        MonitorStore(tmp_path / "notes.sqlite")
    # one monitor per database
    with exclusive(tmp_path / "m.sqlite"):
        with pytest.raises(MonitorDBError, match="in use by another monitor"):
            with exclusive(tmp_path / "m.sqlite"):
                pass


# -- finding complete files --------------------------------------------------------------------


def test_a_file_being_written_is_not_taken(tmp_path):
    y = 0.1 * np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR).astype(np.float32)
    sf.write(tmp_path / "full.wav", y, SR, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    watch = tmp_path / "w"
    watch.mkdir()
    growing = watch / "growing.wav"
    growing.write_bytes(data[: len(data) // 2])  # the header already announces the whole clip
    for name in (".hidden.wav", "copy.wav.part", "copy.wav.tmp", "notes.txt"):
        (watch / name).write_bytes(data)
    w = Watcher(watch, settle=0.0)
    scan = w.scan()
    assert scan.ready == [] and scan.waiting == [growing.resolve()]
    growing.write_bytes(data)  # complete now, but it changed since the last look
    old = time.time_ns() - 7200 * 10**9  # two hours ago
    os.utime(growing, ns=(old, old))
    assert w.scan().ready == []
    ready = w.scan().ready  # unchanged across two looks: taken
    assert [v.path for v in ready] == [growing.resolve()] and ready[0].size == len(data)
    assert not any(is_candidate(n) for n in (".a.wav", "a.wav.part", "a.tmp", "a.txt"))
    assert is_candidate("a.WAV") and is_candidate("b.flac")
    # settle: a file just written waits; one untouched for longer is taken at first sight
    fresh = Watcher(watch, settle=3600.0)
    (watch / "new.wav").write_bytes(data)
    scan = fresh.scan()
    assert [v.path.name for v in scan.ready] == ["growing.wav"] and len(scan.waiting) == 1


def test_partial_wav_is_scored_once_complete(tiny, tmp_path):
    root, models = tiny
    watch, db = tmp_path / "w", tmp_path / "m.sqlite"
    watch.mkdir()
    data = _clips(root)[3].read_bytes()
    part = watch / "incoming.wav"
    part.write_bytes(data[: len(data) // 3])
    args = ["--model", models["ae-mse"], "--machine", "fan", "--watch", watch, "--db", db,
            "--settle", "0", "--once"]  # fmt: skip
    code, out = _monitor(*args)
    assert code == 0, out
    assert _rows(db) == [] and "1 left for the next poll" in out
    with open(part, "ab") as fh:
        fh.write(data[len(data) // 3 :])
    code, out = _monitor(*args)
    assert code == 0, out
    rows = _rows(db)
    assert [(Path(r["path"]).name, r["size"], r["error"]) for r in rows] == [
        ("incoming.wav", len(data), None)
    ]
    code, out = _monitor(*args)  # nothing new
    assert code == 0 and len(_rows(db)) == 1 and out.rstrip().endswith("0 alert(s)")


# -- bad input ---------------------------------------------------------------------------------


def test_bad_files_are_recorded_once_and_the_loop_goes_on(tiny, tmp_path):
    root, models = tiny
    watch, db = tmp_path / "w", tmp_path / "m.sqlite"
    good = _place(watch, _clips(root)[3:5])
    (watch / "empty.wav").write_bytes(b"")
    (watch / "notes.wav").write_text("not audio")
    sf.write(watch / "short.wav", np.zeros(100, np.float32), SR)
    args = ["--model", models["ae-mse"], "--machine", "fan", "--watch", watch, "--db", db,
            "--settle", "0", "--once"]  # fmt: skip
    code, out = _monitor(*args)
    assert code == 0, out
    rows = _rows(db)
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert "0 bytes" in errors["empty.wav"] and "corrupt" in errors["notes.wav"]
    assert "too short" in errors["short.wav"]
    assert sorted(r["path"] for r in rows if r["error"] is None) == sorted(
        str(p.resolve()) for p in good
    )
    assert all(r["score"] is None for r in rows if r["error"])
    assert "2 scored, 3 could not be scored" in out
    code, out = _monitor(*args)  # not retried
    assert code == 0 and len(_rows(db)) == 5 and "0 scored, 0 could not be scored" in out
    (watch / "notes.wav").write_text("still not audio")  # a new version is a new recording
    code, out = _monitor(*args)
    assert code == 0 and len(_rows(db)) == 6 and "0 scored, 1 could not be scored" in out


def test_unknown_machine_or_section_is_an_error_at_start(tiny, tmp_path):
    _, models = tiny
    db = tmp_path / "m.sqlite"
    base = ["--model", models["ae-mse"], "--watch", tmp_path, "--db", db, "--once"]
    code, out = _monitor(*base, "--machine", "pump")
    assert code != 0 and "machine type 'pump' is not in this model" in out
    code, out = _monitor(*base, "--machine", "fan", "--section", "07")
    assert code != 0 and "no section '07'" in out
    code, out = _monitor(*base, "--machine", "fan", "--rule", "dtmm")
    assert code != 0 and "needs a DtMM back end" in out
    assert not db.exists()


# -- alerts and the report ---------------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.received
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def test_k_of_n_alert_is_recorded_told_and_drawn(tiny, tmp_path, webhook):
    root, models = tiny
    url, received = webhook
    det = Detector.load(models["ae-mse"])
    normal = [p for p in _clips(root, "train") if det.score(p, "fan").decision == 0][:6]
    high = [p for p in _clips(root) if det.score(p, "fan").decision == 1][:1]
    assert len(normal) == 6 and len(high) == 1
    (tmp_path / "broken.wav").write_text("not audio")
    n, x = iter(normal), high[0]
    stream = [next(n), next(n), x, next(n), next(n), tmp_path / "broken.wav", next(n), x, x, x, x]
    stream.append(next(n))
    watch, db, log_file = tmp_path / "w", tmp_path / "m.sqlite", tmp_path / "alerts.log"
    files = _place(watch, stream)
    args = ["--model", models["ae-mse"], "--machine", "fan", "--watch", watch, "--db", db,
            "--settle", "0", "--once", "--alert-log", log_file, "--webhook", url]  # fmt: skip
    code, out = _monitor(*args)
    assert code == 0, out
    rows = _rows(db)
    assert [r["path"] for r in rows] == [str(p.resolve()) for p in files]
    decisions = [r["decision"] for r in rows]
    assert decisions == [0, 0, 1, 0, 0, None, 0, 1, 1, 1, 1, 0]  # the broken file is skipped
    alerts = _rows(db, "SELECT * FROM alerts")
    # the odd noise clip (3rd) raises nothing; the third noise clip in a row (10th) does, once
    assert [a["file"] for a in alerts] == [str(files[9].resolve())]
    assert alerts[0]["rule"] == "k-of-n" and alerts[0]["sent_at"] is not None
    assert [bool(r["alerting"]) for r in rows if r["error"] is None] == [
        False, False, False, False, False, False, False, False, True, True, True,
    ]  # fmt: skip
    assert out.count("ALERT [k-of-n]") == 1 and "3 of the last 5 clips" in out
    assert log_file.read_text().count("ALERT") == 1
    assert len(received) == 1 and received[0]["file"] == str(files[9].resolve())
    assert received[0]["machine"] == "fan" and received[0]["threshold"] == 3
    state = _rows(db, "SELECT * FROM state")[0]
    assert state["rule"] == "k-of-n" and state["n_clips"] == 11 and state["alerting"] == 1
    assert json.loads(state["meta"])["window"] == [1, 1, 1, 1, 0]

    page = tmp_path / "page.html"
    code, out = _monitor("--report", "--db", db, "--out", page)
    assert code == 0, out
    html = page.read_text()
    assert (
        GENERATOR in html and "rec_009.wav" in html and "Files that could not be scored: 1" in html
    )
    png = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert png is not None and base64.b64decode(png.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    code, _ = _monitor("--report", "--db", db, "--out", page)  # its own page: replaced
    assert code == 0
    other = tmp_path / "notes.html"
    other.write_text("<html>my notes</html>")
    code, out = _monitor("--report", "--db", db, "--out", other)
    assert code != 0 and "not overwritten" in out and other.read_text() == "<html>my notes</html>"


def test_a_webhook_that_is_down_is_logged_not_fatal(caplog):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", timeout=2.0)
    alert = Alert(1, "now", "fan", "00", "m", "k-of-n", "a.wav", 3.0, 3.0, "msg", "/w")
    with caplog.at_level(logging.WARNING):
        assert sink.send(alert) is False
    assert "could not post alert 1" in caplog.text
    with pytest.raises(ValueError, match="http"):
        WebhookSink("ftp://example.org/x")


# -- a new model, a killed monitor -------------------------------------------------------------


def test_another_model_starts_a_new_stream(tiny, tmp_path):
    root, models = tiny
    watch, db = tmp_path / "w", tmp_path / "m.sqlite"
    clips = _clips(root)
    _place(watch, clips[3:5])
    common = ["--machine", "fan", "--watch", watch, "--db", db, "--settle", "0", "--once"]
    code, out = _monitor("--model", models["ae-mse"], *common)
    assert code == 0 and "new stream" in out
    _place(watch, clips[5:6], start=2)
    code, out = _monitor("--model", models["cnn-dtmm"], *common)
    assert code == 0 and "model changed" in out and "not reused" in out, out
    state = _rows(db, "SELECT * FROM state")[0]
    det = Detector.load(models["cnn-dtmm"])
    assert (state["model_id"], state["rule"], state["n_clips"]) == (det.model_id, "dtmm", 1)
    _place(watch, clips[6:7], start=3)
    code, out = _monitor("--model", models["cnn-dtmm"], *common)
    assert code == 0 and "continuing the stream" in out and "1 clips so far" in out
    assert _rows(db, "SELECT n_clips FROM state")[0][0] == 2
    assert len(_rows(db)) == 4


def _wait_for_rows(
    db: Path, at_least: int, proc: subprocess.Popen, timeout: float, log: Path
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"monitor exited early: {log.read_text()}")
        if db.exists():
            try:
                n = len(_rows(db))
            except sqlite3.OperationalError:  # the schema is being created
                n = 0
            if n >= at_least:
                return n
        time.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} results after {timeout} s")


def test_killed_monitor_restarts_without_duplicates_losses_or_a_reset_state(tiny, tmp_path):
    root, models = tiny
    watch = tmp_path / "w"
    files = _place(watch, _clips(root) * 2)  # 24 recordings
    common = ["--model", models["cnn-dtmm"], "--machine", "fan", "--watch", watch,
              "--settle", "0", "--batch-size", "1", "--device", "cpu"]  # fmt: skip
    # the reference: one uninterrupted pass over the same stream, in a fresh database
    ref_db = tmp_path / "ref.sqlite"
    code, out = _monitor(*common[:-2], "--db", ref_db, "--once")
    assert code == 0 and "24 scored" in out, out

    db = tmp_path / "m.sqlite"
    cmd = [sys.executable, "-m", "stethoscope", "monitor", *map(str, common), "--db", str(db)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "monitor.log", "w")  # a file, not a pipe nobody drains
    proc = subprocess.Popen(
        [*cmd, "--poll", "0.3", "--max-per-poll", "2"], stdout=log, stderr=subprocess.STDOUT,
        env=env,
    )  # fmt: skip
    try:
        _wait_for_rows(db, 4, proc, timeout=120, log=tmp_path / "monitor.log")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    done_before = len(_rows(db))
    assert 4 <= done_before < 24

    # started again (in this process: a fresh monitor that knows only the database)
    code, out = _monitor(*common[:-2], "--db", db, "--once")
    assert code == 0, out
    assert f"continuing the stream of fan section 00 in {watch.resolve()}" in out
    assert f"{done_before} clips so far" in out and f"{24 - done_before} scored" in out

    rows, ref = _rows(db), _rows(ref_db)
    paths = [r["path"] for r in rows]
    assert sorted(paths) == sorted(str(p.resolve()) for p in files)  # each once, none lost
    assert paths == [r["path"] for r in ref]  # in the same order
    assert all(r["error"] is None for r in rows)
    np.testing.assert_allclose(
        [r["rule_value"] for r in rows], [r["rule_value"] for r in ref], rtol=1e-5
    )
    assert [a["file"] for a in _rows(db, "SELECT * FROM alerts")] == [
        a["file"] for a in _rows(ref_db, "SELECT * FROM alerts")
    ]
    key = (str(watch.resolve()), "fan", "00")
    states = []
    for path in (db, ref_db):
        store = MonitorStore(path, read_only=True)
        states.append(store.load_state(*key))
        store.close()
    got, want = states
    assert got is not None and want is not None and got.n_clips == want.n_clips == 24
    for name in ("weights", "means", "covs"):
        np.testing.assert_allclose(got.arrays[name], want.arrays[name], rtol=1e-5, atol=1e-8)


def test_calibrated_dtmm_threshold_is_used_and_kept_across_restarts(tiny, tmp_path):
    root, models = tiny
    normal = tmp_path / "normal"
    normal.mkdir()
    for src in _clips(root, "train")[:6]:
        shutil.copy(src, normal / src.name)
    watch = tmp_path / "w"
    _place(watch, _clips(root)[:4])
    db = tmp_path / "m.sqlite"
    common = ["--model", models["cnn-dtmm"], "--machine", "fan", "--watch", watch, "--db", db,
              "--settle", "0", "--once"]  # fmt: skip
    code, out = _monitor(*common, "--calibrate", normal)
    assert code == 0, out
    assert "calibrated the dtmm threshold on 6 normal recordings" in out

    # the threshold the rule's own calibration gives on the same stream, in name order
    det = Detector.load(models["cnn-dtmm"], device="cpu")
    paths = sorted(str(p) for p in normal.glob("*.wav"))
    views: dict = {}
    results, failed = det.score_many(paths, "fan", names=paths, keep_inputs=views)
    assert not failed
    rule = MixtureEvolution(det.model.sections[("fan", "00")].backend, det.threshold("fan", "00"))
    want = rule.calibrate([views[r.file] for r in results])
    assert want != pytest.approx(det.threshold("fan", "00"))
    got = {r["rule_threshold"] for r in _rows(db)}
    assert len(got) == 1 and got.pop() == pytest.approx(want, rel=1e-6)

    # started again without --calibrate: the stream keeps the calibrated threshold
    _place(watch, _clips(root)[4:6], start=4)
    code, out = _monitor(*common)
    assert code == 0 and "continuing the stream" in out, out
    assert [r["rule_threshold"] for r in _rows(db)][-1] == pytest.approx(want, rel=1e-6)

    # the k-of-n rule has no such threshold to calibrate
    code, out = _monitor("--model", models["ae-mse"], "--machine", "fan", "--watch", watch,
                         "--db", tmp_path / "ae.sqlite", "--once", "--calibrate", normal)  # fmt: skip
    assert code != 0 and "--calibrate applies to the dtmm rule, not k-of-n" in out
