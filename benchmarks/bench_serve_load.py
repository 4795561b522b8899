"""Load test of the HTTP service: requests/s, latency and memory under concurrent clients.

    python benchmarks/bench_serve_load.py [--model DIR | --system ae-mse] [--workers 1]
                                          [--clients 4] [--seconds 60] [--max-batch 8]

Starts `stethoscope serve` on 127.0.0.1 as a subprocess (with --model, that folder; without, a
small model of --system trained for one epoch on synthetic data, kept under --work for the next
run), then N client threads, each on its own keep-alive connection, post 10 s 16 kHz 16-bit WAV
recordings to /v1/score for a fixed time. Prints requests/s, latency percentiles, errors, where
the server's time went (from the answers' timings), its CPU time per request, and its memory
(VmRSS of the server and its worker processes) at the start and the end of the run. The clients
share the machine with the server: on a small machine they take part of its CPU.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000
CLIP_SECONDS = 10.0


def build_model(system: str, work: Path) -> Path:
    """A model of ``system`` trained briefly on a small synthetic set (reused when present)."""
    model = work / f"model-{system}"
    if (model / "system.json").exists():
        return model
    from stethoscope.data import Catalog
    from stethoscope.pipeline.fit import fit_systems
    from stethoscope.synth import generate_dataset
    from stethoscope.systems import get_system

    data = work / "synth"
    if not (data / "dev_data").exists():
        generate_dataset(data, seed=0, scale=0.02, duration=CLIP_SECONDS, machines=["fan"])
    config = get_system(system)
    params: dict[str, object] = {"epochs": 1}
    if config.frontend.name != "ae":
        params.update(batch_size=16)
    config = config.with_frontend_params(**params)
    print(f"training {system} for one epoch on {data} ...", flush=True)
    fit_systems(
        Catalog.scan(data), [config], save_to=lambda c: model, cache_dir=work / "cache",
        device="cpu",
    )  # fmt: skip
    return model


def recordings(n: int, seed: int = 0) -> list[bytes]:
    """``n`` different 10 s recordings (a hum, its harmonics and noise) as 16-bit WAV bytes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(CLIP_SECONDS * SR)) / SR
    out = []
    for _ in range(n):
        f0 = rng.uniform(50, 400)
        y = sum(0.1 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in (1, 2, 3))
        y = y + 0.03 * rng.standard_normal(t.size)
        buf = io.BytesIO()
        sf.write(buf, y.astype(np.float32), SR, format="WAV", subtype="PCM_16")
        out.append(buf.getvalue())
    return out


# -- the server process ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def rss_mib(pid: int) -> float:
    """VmRSS of one process in MiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def memory(pid: int) -> tuple[float, dict[int, float]]:
    per = {p: rss_mib(p) for p in process_tree(pid)}
    return sum(per.values()), per


def start_server(model: Path, port: int, args: argparse.Namespace, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "stethoscope", "serve", "--model", str(model), "--port", str(port),
        "--workers", str(args.workers), "--max-batch", str(args.max_batch), "--device", "cpu",
    ]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if not args.access_log:
        cmd.append("--no-access-log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the service exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.25)
    stop_server(proc)
    sys.exit(f"the service did not start in 300 s:\n{log.read_text()}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- the clients -------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def client(
    port: int, path: str, bodies: list[bytes], start: float, stop: float, seed: int, out: Tally
) -> None:
    """Post recordings back to back on one keep-alive connection until ``stop``; only requests
    sent after ``start`` count (before: warm-up)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "audio/wav"}
    i = seed
    while (t0 := time.perf_counter()) < stop:
        body = bodies[i % len(bodies)]
        i += 1
        try:
            conn.request("POST", path, body=body, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            elapsed = time.perf_counter() - t0
        except (OSError, http.client.HTTPException) as exc:
            if t0 >= start:
                out.errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        if t0 < start:
            continue
        if reply.status != 200:
            out.errors.append(f"{reply.status}: {data[:200]!r}")
            continue
        out.latencies.append(elapsed)
        for key, value in json.loads(data)["timings"].items():
            out.timings[key] = out.timings.get(key, 0.0) + value
    conn.close()


def run_load(port: int, machine: str, args: argparse.Namespace, pid: int) -> None:
    bodies = recordings(8)
    path = f"/v1/score?machine={machine}"
    now = time.perf_counter()
    start, stop = now + args.warmup, now + args.warmup + args.seconds
    tallies = [Tally() for _ in range(args.clients)]
    threads = [
        threading.Thread(target=client, args=(port, path, bodies, start, stop, k, tallies[k]))
        for k in range(args.clients)
    ]
    for th in threads:
        th.start()
    time.sleep(max(0.0, start - time.perf_counter()))
    load_start = os.getloadavg()
    rss_start, per_start = memory(pid)
    cpu_start = cpu_seconds(process_tree(pid))
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(process_tree(pid)) - cpu_start
    rss_end, per_end = memory(pid)
    load_end = os.getloadavg()

    lat = np.array([x for t in tallies for x in t.latencies]) * 1e3
    errors = [e for t in tallies for e in t.errors]
    n = lat.size
    print(f"\n{args.clients} clients x {args.seconds:g} s on 127.0.0.1, {args.workers} worker(s), "
          f"max batch {args.max_batch}, 10 s 16 kHz WAV uploads ({len(bodies[0]):,} bytes)")  # fmt: skip
    print(f"load average (1/5/15 min): {' '.join(f'{x:.2f}' for x in load_start)} at the start, "
          f"{' '.join(f'{x:.2f}' for x in load_end)} at the end, on {os.cpu_count()} cores")  # fmt: skip
    if n:
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        print(f"requests: {n} ok, {len(errors)} errors: {n / elapsed:.1f} requests/s")
        print(f"latency ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {lat.max():.1f}")
        sums: dict[str, float] = {}
        for t in tallies:
            for key, value in t.timings.items():
                sums[key] = sums.get(key, 0.0) + value
        mean = {k: v / n for k, v in sums.items()}
        # with batching, a recording's timings are its share of the batch: the rest of the
        # batch's time shows up here, beside reading the body and writing the answer
        rest = mean.get("server_ms", 0.0) - mean.get("total_ms", 0.0) - mean.get("queue_ms", 0)
        print("server time per request, ms (mean): "
              + "  ".join(f"{k.removesuffix('_ms')} {mean[k]:.2f}" for k in
                          ("queue_ms", "decode_ms", "features_ms", "model_ms", "server_ms")
                          if k in mean)
              + f"  (rest: body, parsing, answer, batch mates: {rest:.2f})")  # fmt: skip
        print(f"server CPU: {1e3 * cpu / n:.2f} ms per request ({cpu / elapsed:.2f} cores busy)")
    else:
        print(f"no request succeeded; {len(errors)} errors")
    for e in sorted(set(errors))[:5]:
        print(f"  error: {e}")
    change = 100 * (rss_end - rss_start) / rss_start if rss_start else float("nan")
    print(f"server RSS: {rss_start:.0f} MiB at the start, {rss_end:.0f} MiB at the end "
          f"({change:+.1f} %), over {len(per_end)} process(es): "
          + ", ".join(f"{p}: {per_start.get(p, 0):.0f} -> {v:.0f}" for p, v in per_end.items()))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a saved model folder (default: train one)")
    ap.add_argument("--system", default="ae-mse", help="system to train when no --model")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_serve",
                    help="where the trained model and its data are kept between runs")  # fmt: skip
    ap.add_argument("--machine", default=None, help="machine type to post (default: the first)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds not counted, first")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    ap.add_argument("--access-log", action="store_true", help="keep uvicorn's access log on")
    args = ap.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    model = args.model or build_model(args.system, args.work)
    port = free_port()
    log = args.work / f"server-{port}.log"
    t0 = time.perf_counter()
    proc = start_server(model, port, args, log)
    try:
        print(f"service up in {time.perf_counter() - t0:.1f} s (pid {proc.pid}, log {log})")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=10) as r:
            info = json.loads(r.read())
        machine = args.machine or sorted(info["machines"])[0]
        print(f"model {info['system']} ({info['model_id']}), machine {machine}")
        run_load(port, machine, args, proc.pid)
    finally:
        stop_server(proc)


if __name__ == "__main__":
    main()
