"""The HTTP service, through a real uvicorn process serving a real tiny model on 127.0.0.1.

Two services run for the whole module, started together: one as shipped (resampling on, one
worker), and a strict one (two workers, --no-resample, a 0.05 MB body limit). Every request goes
over a socket with the standard library's HTTP client.
"""

from __future__ import annotations

import http.client
import importlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from stethoscope.cli import main
from stethoscope.data import Catalog
from stethoscope.detector import Detector, model_id
from stethoscope.pipeline.fit import fit_systems
from stethoscope.synth import generate_dataset
from stethoscope.systems import get_system

_EXTRAS = ("fastapi", "uvicorn", "python_multipart", "prometheus_client")
for _module in _EXTRAS:
    if os.environ.get("CI") == "true":
        importlib.import_module(_module)  # under CI the extras must be there: fail, never skip
    else:
        pytest.importorskip(
            _module, reason="the service's extras are missing: pip install 'stethoscope[serve]'"
        )

MACHINES = ["fan", "valve"]
START_TIMEOUT_S = 90.0
BOUNDARY = "stethoscope-test-boundary"


@dataclass
class Service:
    """A `stethoscope serve` subprocess (its own process group) and where it listens."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    tmpdir: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the service exited ({self.proc.returncode}):\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url("/health"), timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        pytest.fail(f"the service did not answer /health in time:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group: uvicorn's workers too
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(model: Path, work: Path, name: str, *args: str) -> Service:
    port = _free_port()
    log = work / f"{name}.log"
    tmpdir = work / f"{name}-tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "stethoscope", "serve", "--model", str(model),
           "--port", str(port), "--device", "cpu", *args]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return Service(proc, port, log, tmpdir)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny synthetic dataset and an AE-MSE model trained on it (2 epochs)."""
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, seed=5, scale=0.02, duration=2.0, machines=MACHINES, workers=1)
    config = get_system("ae-mse").with_frontend_params(epochs=2)
    model = root.parent / "model-ae-mse"
    fit_systems(
        Catalog.scan(root), [config], save_to=lambda c: model, cache_dir=root.parent / "cache",
        device="cpu",
    )  # fmt: skip
    return root, model


@pytest.fixture(scope="module")
def services(
    tiny: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, Service]]:
    """The service as shipped, and a strict one; both started at once, always stopped."""
    _, model = tiny
    work = tmp_path_factory.mktemp("services")
    started: list[Service] = []
    try:
        started.append(_start(model, work, "default"))
        started.append(_start(model, work, "strict", "--workers", "2", "--no-resample",
                              "--max-body-mb", "0.05"))  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        for service in started:
            service.wait_ready(deadline)
        yield started[0], started[1]
    finally:
        for service in started:
            service.stop()


@pytest.fixture(scope="module")
def detector(tiny: tuple[Path, Path]) -> Detector:
    return Detector.load(tiny[1], device="cpu")


# -- helpers ---------------------------------------------------------------------------------


def request(
    url: str, data: bytes | Iterable[bytes] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """(status, JSON body or text) of one request; error statuses are returned, not raised."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, body, kind = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        status, body, kind = err.code, err.read(), err.headers.get("content-type", "")
    return status, json.loads(body) if "json" in kind else body.decode()


def post_chunked(port: int, path: str, chunks: list[bytes]) -> tuple[int, Any]:
    """(status, JSON body) of a chunked WAV upload. The server may answer and close before the
    last chunk is out (that is what a limit does): the send error is ignored, the answer read."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head + body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = b""
        while piece := sock.recv(65536):
            reply += piece
    status_line, _, rest = reply.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload)


def post_audio(url: str, data: bytes, kind: str = "audio/wav") -> tuple[int, Any]:
    return request(url, data, {"Content-Type": kind})


def multipart(
    files: list[tuple[str, str, bytes, str]], fields: dict[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body of (field, filename, bytes, content type) files and fields."""
    out = io.BytesIO()
    for key, value in (fields or {}).items():
        out.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode())
        out.write(value.encode() + b"\r\n")
    for key, filename, data, kind in files:
        out.write(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"; '
            f'filename="{filename}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
        )
        out.write(data + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue(), {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def wav_bytes(y: np.ndarray, sr: int = 16000, fmt: str = "WAV") -> bytes:
    out = io.BytesIO()
    sf.write(out, y, sr, format=fmt, subtype="PCM_16")
    return out.getvalue()


def test_clip(root: Path, machine: str = "fan", i: int = 0) -> Path:
    return sorted((root / "dev_data" / "raw" / machine / "test").glob("*.wav"))[i]


test_clip.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        sample, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sample == name and got == want:
            return float(value)
    return 0.0


# -- scoring ---------------------------------------------------------------------------------


def test_raw_body_and_multipart_score_as_the_detector(services, tiny, detector):
    default, _ = services
    root, model = tiny
    path = test_clip(root, "valve", 1)
    raw = path.read_bytes()
    expected = detector.score(path, "valve", domain="source")
    answers = [
        post_audio(default.url("/v1/score?machine=valve&domain=source&name=a.wav"), raw),
        post_audio(
            default.url("/v1/score?machine=valve&domain=source"), raw, "application/octet-stream"
        ),  # fmt: skip
        request(
            default.url("/v1/score"),
            *multipart(
                [("file", "dir/b.wav", raw, "audio/wav")],
                {"machine": "valve", "section": "0", "domain": "source"},
            ),
        ),  # fmt: skip
    ]
    for status, body in answers:
        assert status == 200, body
        assert body["score"] == pytest.approx(expected.score, rel=1e-6)
        assert body["decision"] == expected.decision == int(body["score"] > body["threshold"])
        assert body["threshold"] == pytest.approx(detector.threshold("valve", "00"), rel=1e-12)
        assert (body["machine"], body["section"], body["domain"]) == ("valve", "00", "source")
        assert body["system"] == "ae-mse" and body["model_id"] == model_id(model)
        assert body["notes"] == []
        timings = body["timings"]
        assert set(timings) >= {"decode_ms", "features_ms", "model_ms", "total_ms", "server_ms"}
        assert timings["server_ms"] >= timings["total_ms"] > 0
    # the client's file name is a label only: its last component, never a path
    assert [b["file"] for _, b in answers] == ["a.wav", "<upload>", "b.wav"]
    # FLAC too, and the section by default (the machine type's only one)
    y, sr = sf.read(path, dtype="int16")
    status, body = post_audio(
        default.url("/v1/score?machine=valve"), wav_bytes(y, sr, "FLAC"), "audio/flac"
    )
    assert status == 200 and body["score"] == pytest.approx(expected.score, rel=1e-6)


def test_other_sample_rates_are_resampled_and_stereo_mixed_as_the_detector(services, detector):
    default, _ = services
    t = np.arange(int(1.5 * 44100)) / 44100
    y44 = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    raw44 = wav_bytes(y44, 44100)
    status, body = post_audio(default.url("/v1/score?machine=fan"), raw44)
    assert status == 200, body
    assert any("resampled" in n and "44100" in n for n in body["notes"])
    assert body["score"] == pytest.approx(detector.score(raw44, "fan").score, rel=1e-6)
    stereo = wav_bytes(np.stack([y44, 0.5 * y44], axis=1), 44100)
    status, body = post_audio(default.url("/v1/score?machine=fan"), stereo)
    assert status == 200, body
    assert any("2 channels" in n for n in body["notes"])
    assert body["score"] == pytest.approx(detector.score(stereo, "fan").score, rel=1e-6)


def test_batch_scores_the_good_files_and_names_the_bad(services, tiny, detector):
    default, _ = services
    root, _ = tiny
    good = [test_clip(root, "fan", i) for i in range(3)]
    files = [
        ("files", good[0].name, good[0].read_bytes(), "audio/wav"),
        ("files", "notes.wav", b"these are not samples", "audio/wav"),
        ("files", good[1].name, good[1].read_bytes(), "application/octet-stream"),
        ("files", "photo.png", b"\x89PNG\r\n", "image/png"),
        ("files", good[2].name, good[2].read_bytes(), "audio/wav"),
    ]
    status, body = request(default.url("/v1/score/batch?machine=fan"), *multipart(files))
    assert status == 200, body
    assert (body["scored"], body["failed"]) == (3, 2)
    assert [r["index"] for r in body["results"]] == [0, 2, 4]
    for r, path in zip(body["results"], good, strict=True):
        assert r["file"] == path.name
        assert r["score"] == pytest.approx(detector.score(path, "fan").score, rel=1e-6)
    errors = {e["file"]: e for e in body["errors"]}
    assert errors["notes.wav"]["index"] == 1 and "not decodable" in errors["notes.wav"]["detail"]
    assert errors["photo.png"]["index"] == 3 and "image/png" in errors["photo.png"]["detail"]
    # a batch needs its files, and the machine type is checked before any scoring
    status, body = request(default.url("/v1/score/batch?machine=fan"), *multipart([]))
    assert status == 422 and body["field"] == "files"
    status, body = request(default.url("/v1/score/batch?machine=pump"), *multipart(files[:1]))
    assert status == 404 and body["field"] == "machine"


def test_every_bad_input_gets_its_status_and_message(services, tiny):
    default, _ = services
    root, _ = tiny
    good = test_clip(root).read_bytes()
    short = wav_bytes(np.zeros(100, np.float32))
    score = default.url("/v1/score")
    cases: list[tuple[str, tuple[int, Any], int, str | None, str]] = [
        ("text body", post_audio(score + "?machine=fan", b"hello", "text/plain"), 415,
         "content-type", "text/plain"),
        ("png body", post_audio(score + "?machine=fan", b"\x89PNG\r\n", "image/png"), 415,
         "content-type", "image/png"),
        ("not audio", post_audio(score + "?machine=fan", b"RIFF but no wave"), 422, "body",
         "not decodable"),
        ("empty", post_audio(score + "?machine=fan", b""), 422, "body", "empty"),
        ("too short", post_audio(score + "?machine=fan", short), 422, "body", "too short"),
        ("machine", post_audio(score + "?machine=pump", good), 404, "machine", "'pump'"),
        ("no machine", post_audio(score, good), 422, "machine", "fan, valve"),
        ("section", post_audio(score + "?machine=fan&section=07", good), 422, "section", "'07'"),
        ("domain", post_audio(score + "?machine=fan&domain=factory", good), 422, "domain",
         "'factory'"),
        ("form domain", request(score, *multipart([("file", "a.wav", good, "audio/wav")],
                                                  {"machine": "fan", "domain": "factory"})),
         422, "domain", "'factory'"),
        ("no file", request(score, *multipart([], {"machine": "fan"})), 422, "file", "'file'"),
        ("two files", request(score, *multipart([("file", "a.wav", good, "audio/wav")] * 2,
                                                {"machine": "fan"})), 422, "file", "batch"),
        ("png part", request(score, *multipart([("file", "a.png", good, "image/png")],
                                               {"machine": "fan"})), 415, "content-type",
         "image/png"),
        ("bad part", request(score + "?machine=fan", b"--x\r\nnonsense",
                             {"Content-Type": "multipart/form-data; boundary=y"}), 422, "body",
         "multipart"),
        ("no route", request(default.url("/v2/nothing")), 404, None, "Not Found"),
    ]  # fmt: skip
    for what, (status, body), want_status, field, text in cases:
        assert status == want_status, (what, body)
        assert isinstance(body, dict) and text in body["detail"], (what, body)
        assert body.get("field") == field, (what, body)
    # the service is still well
    status, body = post_audio(score + "?machine=fan", good)
    assert status == 200 and body["score"] > 0


def test_uploads_stay_in_memory(services, tiny, detector):
    default, _ = services
    root, _ = tiny
    y, sr = sf.read(test_clip(root), dtype="int16")
    long = wav_bytes(np.tile(y, 20), sr)  # 40 s, 1.3 MB: Starlette's parser would spool it
    assert len(long) > 1024 * 1024
    before = sorted(default.tmpdir.rglob("*"))
    status, body = request(
        default.url("/v1/score"), *multipart([("file", "long.wav", long, "audio/wav")],
                                             {"machine": "fan"})
    )  # fmt: skip
    assert status == 200, body
    assert body["score"] == pytest.approx(detector.score(long, "fan").score, rel=1e-6)
    assert sorted(default.tmpdir.rglob("*")) == before


# -- the service itself ----------------------------------------------------------------------


def test_health_model_and_openapi(services, tiny, detector):
    default, _ = services
    _, model = tiny
    assert request(default.url("/health")) == (
        200, {"status": "ok", "system": "ae-mse", "model_id": model_id(model)}
    )  # fmt: skip
    status, info = request(default.url("/v1/model"))
    assert status == 200
    assert info["model_id"] == model_id(model) and info["system"] == "ae-mse"
    assert info["machines"] == {
        m: {"00": {"threshold": pytest.approx(detector.threshold(m))}} for m in MACHINES
    }
    assert "training clips" in info["trained_on"] and info["resample"] is True
    assert info["workers"] == 1 and info["max_body_bytes"] == 32 * 1024 * 1024
    status, spec = request(default.url("/openapi.json"))
    assert status == 200
    paths = spec["paths"]
    assert set(paths) == {"/v1/score", "/v1/score/batch", "/health", "/v1/model", "/metrics"}
    for path, method in (("/v1/score", "post"), ("/v1/score/batch", "post"), ("/health", "get"),
                         ("/v1/model", "get"), ("/metrics", "get")):  # fmt: skip
        assert paths[path][method]["summary"], path
    score = paths["/v1/score"]["post"]
    params = {p["name"]: p for p in score["parameters"]}
    assert set(params) == {"machine", "section", "domain", "name"}
    assert all(p["description"] and p["in"] == "query" for p in params.values())
    assert set(score["requestBody"]["content"]) >= {"audio/wav", "multipart/form-data"}
    assert {"200", "404", "413", "415", "422"} <= set(score["responses"])
    ok = score["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    fields = spec["components"]["schemas"][ok.rsplit("/", 1)[-1]]["properties"]
    assert {"score", "decision", "threshold", "model_id", "notes", "timings"} <= set(fields)
    batch = paths["/v1/score/batch"]["post"]
    assert "files" in batch["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    status, page = request(default.url("/docs"))
    assert status == 200 and "swagger" in page.lower()


def test_metrics_count_requests_errors_and_latency(services, tiny):
    default, _ = services
    root, _ = tiny
    _, before = request(default.url("/metrics"))
    ok = {"endpoint": "/v1/score", "method": "POST", "status": "200"}
    assert post_audio(default.url("/v1/score?machine=fan"), test_clip(root).read_bytes())[0] == 200
    assert post_audio(default.url("/v1/score?machine=fan"), b"x", "text/plain")[0] == 415
    _, after = request(default.url("/metrics"))
    for name, labels, step in (
        ("stethoscope_http_requests_total", ok, 1),
        ("stethoscope_http_requests_total", {**ok, "status": "415"}, 1),
        ("stethoscope_http_errors_total",
         {"endpoint": "/v1/score", "kind": "unsupported_media_type"}, 1),
        ("stethoscope_http_request_duration_seconds_count", {"endpoint": "/v1/score"}, 2),
        ("stethoscope_scoring_stage_seconds_count", {"stage": "model"}, 1),
    ):  # fmt: skip
        assert metric(after, name, **labels) == metric(before, name, **labels) + step, name
    assert metric(after, "stethoscope_model_info", system="ae-mse",
                  model_id=request(default.url("/health"))[1]["model_id"]) == 1  # fmt: skip


# -- the strict service: two workers, no resampling, a 0.05 MB body limit ---------------------


def test_body_limit_is_enforced_before_and_while_reading(services, tiny, detector):
    _, strict = services
    root, _ = tiny
    limit = int(0.05 * 1024 * 1024)
    # declared too large: refused from the header alone, before any of the body is sent
    conn = http.client.HTTPConnection("127.0.0.1", strict.port, timeout=30)
    conn.putrequest("POST", "/v1/score?machine=fan")
    conn.putheader("Content-Type", "audio/wav")
    conn.putheader("Content-Length", str(10 * limit))
    conn.endheaders()
    reply = conn.getresponse()
    body = json.loads(reply.read())
    assert reply.status == 413 and body["field"] == "body" and "too large" in body["detail"]
    conn.close()
    # no length given (chunked): refused once the count passes the limit
    status, body = post_chunked(strict.port, "/v1/score?machine=fan", [bytes(16384)] * 5)
    assert status == 413 and f"{limit:,} bytes" in body["detail"]
    # a multipart upload counts as a whole
    big = test_clip(root).read_bytes()
    status, body = request(
        strict.url("/v1/score"),
        *multipart([("file", "a.wav", big, "audio/wav")], {"machine": "fan"}),
    )
    assert status == 413
    # and a recording within the limit is scored as ever
    y, sr = sf.read(test_clip(root), dtype="int16")
    small = wav_bytes(y[: sr // 2], sr)
    assert len(small) < limit
    status, body = post_audio(strict.url("/v1/score?machine=fan"), small)
    assert status == 200, body
    assert body["score"] == pytest.approx(detector.score(small, "fan").score, rel=1e-6)


def test_no_resample_refuses_other_rates_and_workers_each_load_the_model(services, tiny):
    _, strict = services
    _, model = tiny
    raw44 = wav_bytes(np.full(22050, 0.1, np.float32), 44100)
    status, body = post_audio(strict.url("/v1/score?machine=fan"), raw44)
    assert status == 422 and body["field"] == "body"
    assert "44100 Hz" in body["detail"] and "resampling is turned off" in body["detail"]
    status, info = request(strict.url("/v1/model"))
    assert status == 200 and info["resample"] is False and info["workers"] == 2
    assert info["model_id"] == model_id(model)
    log = strict.log.read_text()
    assert log.count("Application startup complete") == 2  # two workers, each with the model


def test_serve_stops_on_a_bad_model_folder_in_one_line(tmp_path):
    (tmp_path / "not-a-model").mkdir()
    res = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "not-a-model")])
    assert res.exit_code != 0
    assert "not-a-model" in res.output and "Traceback" not in res.output
