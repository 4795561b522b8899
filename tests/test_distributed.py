"""Training under torchrun (two processes, gloo on the CPU): one model written by rank 0 that scores
like a one-process model, resume after the whole group is killed, AE machine types spread over the
ranks; and the batches gathered from the feature cache equal the ones held in memory.

STETHOSCOPE_DIST_DEVICE=cuda runs the torchrun tests on two GPUs with NCCL instead
(benchmarks/gpu_check.sh does where two are present)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from stethoscope.cli import main
from stethoscope.data import Catalog
from stethoscope.evaluation.metrics import roc_area
from stethoscope.features.stored import StoredFeatures
from stethoscope.models.clip_batches import ClipBatches
from stethoscope.pipeline.features import load_features
from stethoscope.pipeline.system_model import SystemModel
from stethoscope.synth import generate_dataset

MACHINES = ["fan", "valve"]
CNN = ["--param", "batch_size=16", "--param", "n_views=2"]
TIMEOUT = 240  # seconds for one torchrun command (about 25 s on the 2-core CI machine)
DEVICE = os.environ.get("STETHOSCOPE_DIST_DEVICE", "cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, seed=5, scale=0.02, duration=2.0, machines=MACHINES, workers=1)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(*args: str) -> list[str]:
    """The command line of ``stethoscope ARGS`` on two processes (gloo on the CPU)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
        "-m", "stethoscope", *args, "--device", DEVICE,
    ]  # fmt: skip


def run_torchrun(*args: str) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    res = subprocess.run(torchrun(*args), capture_output=True, text=True, timeout=TIMEOUT, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    return out


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and by them, from /proc (Linux)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                out += [int(child), *descendants(int(child))]
    return out


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def fit_args(system: str, data: Path, out: Path, cache: Path, epochs: int) -> list[str]:
    return [
        "fit", "--system", system, "--data", str(data), "--out", str(out),
        "--cache-dir", str(cache), "--epochs", str(epochs),
    ]  # fmt: skip


def fit_here(args: list[str]) -> None:
    res = CliRunner().invoke(main, [*args, "--device", DEVICE], catch_exceptions=False)
    assert res.exit_code == 0, res.output


def model_files(model: Path) -> list[str]:
    return sorted(
        str(p.relative_to(model))
        for p in model.rglob("*")
        if p.is_file() and ".work" not in p.parts
    )


def section_aucs(model: Path, data: Path, cache: Path) -> list[float]:
    """The AUC of every machine/section of a saved model on the test clips (scores all finite)."""
    loaded = SystemModel.load(model, device=DEVICE)
    test = Catalog.scan(data).select(split="test")
    results, failures = loaded.score_clips(test, cache_dir=cache, device=DEVICE)
    assert not failures
    aucs = []
    for clips, scores, _ in results.values():
        assert np.all(np.isfinite(scores))
        aucs.append(roc_area([int(c.label == "anomaly") for c in clips], scores))
    return aucs


def test_dualcnn_under_torchrun_writes_one_model_that_scores_like_one_process(
    tiny: Path, tmp_path: Path
):
    cache = tmp_path / "cache"
    out = run_torchrun(*fit_args("cnn-kmeans", tiny, tmp_path / "ddp", cache, 2), *CNN)
    n = len(Catalog.scan(tiny).select(split="train"))
    sizes = [16] * (n // 16) + ([n % 16] if n % 16 >= 2 else [])  # an epoch's batches
    padded = [sizes[i % len(sizes)] for i in range(-(-len(sizes) // 2) * 2)]
    assert f"dualcnn: distributed: world size 2, {sum(padded[0::2])} clips per rank" in out
    assert out.count("saved cnn-kmeans to") == 1  # rank 0 alone reports and writes
    assert not (tmp_path / "ddp" / ".stethoscope.lock").exists()

    fit_here([*fit_args("cnn-kmeans", tiny, tmp_path / "one", cache, 2), *CNN])
    assert model_files(tmp_path / "ddp") == model_files(tmp_path / "one")
    ddp_sys = json.loads((tmp_path / "ddp" / "system.json").read_text())
    one_sys = json.loads((tmp_path / "one" / "system.json").read_text())
    assert ddp_sys["system"] == one_sys["system"] and ddp_sys["sections"] == one_sys["sections"]
    ddp_aucs = section_aucs(tmp_path / "ddp", tiny, cache)
    one_aucs = section_aucs(tmp_path / "one", tiny, cache)
    assert len(ddp_aucs) == len(one_aucs) == 2
    assert np.mean(ddp_aucs) > 0.5 and np.mean(one_aucs) > 0.5


def test_killed_torchrun_training_resumes_from_its_last_epoch(tiny: Path, tmp_path: Path):
    model, cache = tmp_path / "model", tmp_path / "cache"
    args = [*fit_args("cnn-kmeans", tiny, model, cache, 3), *CNN]
    ckpt = model / ".work"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        torchrun(*args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not list(ckpt.rglob("checkpoint.json")):
            assert first.poll() is None, "the training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within the time limit"
            time.sleep(0.05)
    finally:  # torchrun starts each rank in a session of its own: kill them all, by id
        group = [first.pid, *descendants(first.pid)]
        for pid in group:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        first.wait(timeout=30)
    assert len(group) >= 3  # torchrun and its two ranks
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in group):
        assert time.monotonic() < deadline, "a killed rank is still running"
        time.sleep(0.05)
    (meta,) = list(ckpt.rglob("checkpoint.json"))
    epoch = json.loads(meta.read_text())["epoch"]
    assert epoch in (1, 2)
    assert not (model / "system.json").exists()

    out = run_torchrun(*args)
    assert f"dualcnn: resuming at epoch {epoch + 1} of 3 from {meta.parent}" in out
    assert json.loads(meta.read_text())["epoch"] == 3
    assert (model / "system.json").exists()


def test_ae_machine_types_are_spread_over_the_ranks(tiny: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    out = run_torchrun(*fit_args("ae-mse", tiny, tmp_path / "ddp", cache, 2))
    assert "ae: distributed: world size 2, rank 0: fan; rank 1: valve" in out
    # each machine type's AE trained alone on its rank: the weights of a one-process training
    fit_here(fit_args("ae-mse", tiny, tmp_path / "one", cache, 2))
    ddp = load_file(str(tmp_path / "ddp" / "frontend" / "frontend.safetensors"))
    one = load_file(str(tmp_path / "one" / "frontend" / "frontend.safetensors"))
    assert sorted(ddp) == sorted(one) and {k.split("/")[0] for k in ddp} == set(MACHINES)
    for key in ddp:  # bit for bit on the CPU; GPU kernels may differ in rounding
        torch.testing.assert_close(
            ddp[key],
            one[key],
            rtol=0 if DEVICE == "cpu" else 1e-4,
            atol=0 if DEVICE == "cpu" else 1e-6,
        )


def test_a_study_under_torchrun_trains_each_front_end_once_and_rank_0_writes(
    tiny: Path, tmp_path: Path
):
    run = tmp_path / "run"
    config = tmp_path / "study.yaml"
    config.write_text(
        f"data: {tiny}\nout: {run}\ncache_dir: {tmp_path / 'cache'}\n"
        "systems: [ae-mse, cnn-kmeans]\n"
        "frontends:\n  dualcnn: {epochs: 1, batch_size: 16, n_views: 2}\n  ae: {epochs: 1}\n"
    )
    out = run_torchrun("run", "--config", str(config))
    assert "dualcnn: distributed: world size 2" in out and "ae: distributed: world size 2" in out
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) == {"ae-mse", "cnn-kmeans"}
    assert all(0.0 < v["official_score"] <= 1.0 for v in summary.values())
    assert not (run / ".stethoscope.lock").exists() and (run / "report" / "index.html").exists()
    assert out.count("wall time") == 1  # one summary: rank 0's
    again = run_torchrun("run", "--config", str(config))  # finished: nothing trained again
    assert "distributed: world size" not in again and again.count("skipped (finished earlier)") == 2


def test_batches_gathered_from_the_cache_equal_the_batches_held_in_memory(
    tiny: Path, tmp_path: Path
):
    clips = Catalog.scan(tiny).select(split="train")
    feats = load_features(clips, "waveform", cache_dir=tmp_path / "cache", device="cpu")
    again = load_features(clips, "waveform", cache_dir=tmp_path / "cache", device="cpu")
    for res in (feats, again):  # filled or found: held as cache entries, read when indexed
        assert isinstance(res.features, StoredFeatures)
        assert len(res.features) == len(clips) and res.features.in_memory == 0
    in_memory = [np.array(w) for w in again.features]
    labels = np.arange(len(clips)) % 3
    length = 40_000  # longer than the 2 s clips: tiled
    streamed = ClipBatches(again.features, labels, length, "tile", torch.device("cpu"), False)
    held = ClipBatches(in_memory, labels, length, "tile", torch.device("cpu"), True)
    assert held.x is not None and streamed.x is None
    order = streamed.order(torch.Generator().manual_seed(0), 16)
    assert [len(b) for b in order] == [16, 16, len(clips) - 32]
    for a, b in zip(streamed.load(order), held.load(order), strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)
