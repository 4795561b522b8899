"""The shared training loop: metrics, schedule, checkpoints, resume (also after SIGKILL) and no
global torch state changed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stethoscope.data.clip import Clip
from stethoscope.errors import ModelError
from stethoscope.models import FRONTENDS
from stethoscope.models.training import EpochRandom, LoopConfig, global_seed, train

CPU = torch.device("cpu")


class ToyTask:
    """Linear regression through a small MLP (with optional dropout: draws from the global RNG)."""

    def __init__(
        self, n: int = 40, batch: int = 8, seed: int = 0, dropout: float = 0.0, shift: float = 0.0
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 3.0, 0.5]) + shift
        with global_seed(seed):
            self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(dropout), nn.Linear(16, 1))
        self.modules: dict[str, nn.Module] = {"net": self.net}
        self.batch = batch
        self.threads_seen: list[int] = []

    def batches(self, epoch: int, rand: EpochRandom) -> list[torch.Tensor]:
        return list(torch.randperm(len(self.x), generator=rand.host).split(self.batch))

    def step(
        self, idx: torch.Tensor, rand: EpochRandom
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        self.threads_seen.append(torch.get_num_threads())
        pred = self.net(self.x[idx])[:, 0]
        err = pred - self.y[idx]
        return F.mse_loss(pred, self.y[idx]), {"mae": err.abs().mean()}, len(idx)

    def epoch_metrics(self) -> dict[str, float]:
        return {"probe": 1.5}


def loop(**kw) -> LoopConfig:
    return LoopConfig(**{"name": "toy", "epochs": 4, "seed": 7, "lr": 1e-2, **kw})


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class Stop(Exception):
    pass


def stop_after(epoch: int):
    def progress(stage: str, done: float, total: int, info: dict) -> None:
        if done == epoch:
            raise Stop

    return progress


# ------------------------------------------------------------------------------------ the loop


def test_metrics_are_sample_weighted_batch_means():
    task = ToyTask(n=30, batch=8)  # batches of 8, 8, 8, 6
    with torch.no_grad():
        pred = task.net(task.x)[:, 0]
    (h,) = train(task, loop(epochs=1, lr=0.0), CPU)  # lr 0: the weights never move
    assert h["epoch"] == 1 and h["probe"] == 1.5 and h["lr"] == 0.0
    assert h["loss"] == pytest.approx(float(F.mse_loss(pred, task.y)), rel=1e-6)
    assert h["mae"] == pytest.approx(float((pred - task.y).abs().mean()), rel=1e-6)
    assert h["samples_per_s"] == pytest.approx(30 / h["seconds"], rel=1e-6)
    assert not task.net.training


def test_cosine_schedule_reaches_zero_per_step():
    task = ToyTask(n=32, batch=8)  # 4 steps per epoch
    hist = train(task, loop(schedule="cosine", epochs=3, lr=0.1), CPU)
    # the lr of each epoch's last step (step 3 of 4)
    expected = [0.05 * (1 + math.cos(math.pi * (e + 0.75) / 3)) for e in range(3)]
    np.testing.assert_allclose([h["lr"] for h in hist], expected, rtol=1e-12)
    with pytest.raises(ValueError, match="schedule"):
        loop(schedule="step")


def test_training_ignores_and_keeps_torch_global_state():
    torch.manual_seed(123)
    state, threads, bench = torch.get_rng_state(), torch.get_num_threads(), False
    torch.backends.cudnn.benchmark = bench
    a = ToyTask(dropout=0.3)
    train(a, loop(threads=2, cudnn_benchmark=True), CPU)
    assert set(a.threads_seen) == {2}  # set while training...
    assert torch.get_num_threads() == threads  # ...and restored
    assert torch.equal(torch.get_rng_state(), state)  # not drawn from, not reseeded
    assert torch.backends.cudnn.benchmark is bench
    torch.manual_seed(999)  # another global state gives the same training
    b = ToyTask(dropout=0.3)
    train(b, loop(threads=2), CPU)
    assert_same(weights(a.net), weights(b.net))


def test_resume_continues_exactly_with_dropout(tmp_path):
    full = ToyTask(dropout=0.5)
    hist_full = train(full, loop(), CPU, work_dir=tmp_path / "full")
    run = ToyTask(dropout=0.5)
    with pytest.raises(Stop):
        train(run, loop(), CPU, work_dir=tmp_path / "run", progress=stop_after(2))
    again = ToyTask(dropout=0.5)  # a fresh process: new modules, the checkpoint on disk
    calls = []
    hist = train(
        again,
        loop(),
        CPU,
        work_dir=tmp_path / "run",
        progress=lambda s, d, t, i: calls.append((s, d, t)),
    )
    assert calls == [("toy: epochs", 2, 4), ("toy: epochs", 3, 4), ("toy: epochs", 4, 4)]
    assert_same(weights(again.net), weights(full.net))
    assert [h["loss"] for h in hist] == [h["loss"] for h in hist_full]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "checkpoint-0004.safetensors",
        "checkpoint.json",
    ]
    # a finished run trains no more
    done = ToyTask(dropout=0.5)
    assert len(train(done, loop(), CPU, work_dir=tmp_path / "run")) == 4
    assert_same(weights(done.net), weights(full.net))


def test_resume_logs_where_it_continues(tmp_path, caplog):
    with pytest.raises(Stop):
        train(ToyTask(), loop(), CPU, work_dir=tmp_path, progress=stop_after(1))
    with caplog.at_level("INFO", logger="stethoscope.models.training"):
        train(ToyTask(), loop(), CPU, work_dir=tmp_path)
    assert f"toy: resuming at epoch 2 of 4 from {tmp_path}" in caplog.text


def test_checkpoint_of_other_data_or_settings_is_refused(tmp_path):
    train(ToyTask(), loop(epochs=1), CPU, work_dir=tmp_path, fingerprint={"data": "a"})
    with pytest.raises(ModelError, match=r"settings \(loop.lr: 0.01 then, 0.02 now\)"):
        train(ToyTask(), loop(epochs=1, lr=0.02), CPU, work_dir=tmp_path, fingerprint={"data": "a"})
    with pytest.raises(ModelError, match=r'data: "a" then, "b" now'):
        train(ToyTask(), loop(epochs=1), CPU, work_dir=tmp_path, fingerprint={"data": "b"})
    # threads and the name change how it runs, not what it computes: resumed
    assert (
        len(
            train(
                ToyTask(),
                loop(epochs=1, threads=1, name="other"),
                CPU,
                work_dir=tmp_path,
                fingerprint={"data": "a"},
            )
        )
        == 1
    )


def test_broken_checkpoint_is_a_model_error(tmp_path):
    train(ToyTask(), loop(epochs=1), CPU, work_dir=tmp_path)
    (tmp_path / "checkpoint-0001.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="unreadable training checkpoint"):
        train(ToyTask(), loop(epochs=2), CPU, work_dir=tmp_path)
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    (tmp_path / "checkpoint.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(ModelError, match="not a version-1 training checkpoint"):
        train(ToyTask(), loop(epochs=2), CPU, work_dir=tmp_path)


# ------------------------------------------------------------------- SIGKILL, then run again


def kill_case(name: str) -> tuple[dict, list[Clip], list[np.ndarray]]:
    """Settings, clips and waveforms of the SIGKILL tests: 16 one-second tones of two classes."""
    cases: dict[str, dict] = {
        "dualcnn": dict(input_seconds=1.0, epochs=3, batch_size=8, n_subclusters=2, threads=1),
        "acae": dict(
            input_seconds=0.5,
            freq_bins=16,
            channels=[4, 8],
            d_model=8,
            latent_dim=8,
            heads=2,
            dropout=0.2,
            batch_size=8,
            epochs=3,
            threads=1,
        ),
    }
    params = cases[name]
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    clips, waves = [], []
    for i in range(16):
        c = i % 2
        waves.append(
            (
                0.1 * np.sin(2 * np.pi * 200 * (c + 1) * t) + 0.02 * rng.standard_normal(16000)
            ).astype(np.float32)
        )
        clips.append(
            Clip(
                Path(f"/toy/fan/train/{i}.wav"),
                "fan",
                "00",
                "train",
                "source",
                "normal",
                f"{i:04d}",
                f"kind_{c}",
            )
        )
    return params, clips, waves


SCRIPT = textwrap.dedent("""
    import logging, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[5])
    from test_training import kill_case
    from stethoscope.models import FRONTENDS

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    name, work, out, pause = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
    params, clips, waves = kill_case(name)

    def progress(stage, done, total, info):
        print(f"progress {done}/{total}", flush=True)
        if float(done).is_integer() and 0 < done < total:
            time.sleep(pause)

    fe = FRONTENDS.get(name)(params, device="cpu")
    fe.fit(clips, waves, progress=progress, work_dir=work)
    fe.save(out)
    print("finished", flush=True)
""")


@pytest.mark.parametrize("name", ["dualcnn", "acae"])
def test_training_killed_with_sigkill_resumes_from_its_last_epoch(name, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    work = tmp_path / "work"
    ckpt = work / ("member_0" if name == "dualcnn" else "") / "checkpoint.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def run(out: str, pause: float) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                str(script),
                name,
                str(work),
                str(tmp_path / out),
                str(pause),
                str(Path(__file__).parent),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )

    first = run("first", 0.5)
    assert first.stdout is not None
    for line in first.stdout:  # the end of epoch 1: its checkpoint is on disk
        if line.startswith("progress 1/3"):
            break
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    epoch = json.loads(ckpt.read_text())["epoch"]
    assert epoch in (1, 2)  # killed in the pause after epoch 1 or during epoch 2

    second = run("second", 0.0)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    assert f"{name}: resuming at epoch {epoch + 1} of 3 from {ckpt.parent}" in out
    # the bar starts where the checkpoint left off; only the remaining epochs run
    assert [x for x in out.splitlines() if x.startswith("progress")] == [
        f"progress {e}/3" for e in range(epoch, 4)
    ]
    assert json.loads(ckpt.read_text())["epoch"] == 3

    # the same model as a training never interrupted (one thread in both processes)
    params, clips, waves = kill_case(name)
    uninterrupted = FRONTENDS.get(name)(params, device="cpu")
    uninterrupted.fit(clips, waves)
    resumed = FRONTENDS.get(name).load(tmp_path / "second", device="cpu")
    assert resumed.n_members == 1
    np.testing.assert_array_equal(
        resumed.transform(clips, waves, "embedding"),
        uninterrupted.transform(clips, waves, "embedding"),
    )
