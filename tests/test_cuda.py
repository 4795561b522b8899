"""CUDA paths: the same numbers as on the CPU, models trained on a GPU that load and score on a
CPU, and training that resumes there and leaves torch's global state as it was.

Skipped where no CUDA device is visible (CI has none); run on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from stethoscope.features import LogMel, extract
from test_dualcnn import _toy_clips  # tones in noise, one fundamental per class

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_logmel_on_cuda_matches_official_fixtures_and_cpu(shared: Path):
    folder = shared / "fixtures" / "official_logmel"
    with open(folder / "clips.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    paths = [shared / r["clip"] for r in rows]
    gpu = extract(paths, LogMel(), device="cuda", batch_size=3)
    cpu = extract(paths, LogMel(), device="cpu", batch_size=3)
    assert not gpu.failures and len(gpu.features) == len(rows)
    for row, got, ref_cpu in zip(rows, gpu.features, cpu.features, strict=True):
        ref = np.load(folder / row["npy"])
        assert got.shape == ref.shape and got.dtype == np.float32
        err = np.abs(got.astype(np.float64) - ref)
        assert err.max() <= 0.1, row["npy"]
        assert np.mean(err <= 0.01) >= 0.999, row["npy"]
        assert np.abs(got - ref_cpu).max() <= 1e-2, row["npy"]


def test_ae_trained_on_cuda_scores_the_same_on_cpu(tmp_path: Path):
    from stethoscope.models.ae import AEConfig, AEFrontEnd, reconstruction_residuals, train_ae

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(4, 640)) / 2.0
    clips = [
        (rng.normal(size=(50, 4)) @ basis + 0.05 * rng.normal(size=(50, 640))).astype(np.float32)
        for _ in range(20)
    ]
    model, history = train_ae(clips, AEConfig(epochs=4, batch_size=64, seed=1), device="cuda")
    assert next(model.parameters()).is_cuda
    assert history[-1]["loss"] < history[0]["loss"]
    on_gpu = reconstruction_residuals(model, clips[:5], device="cuda")
    fe = AEFrontEnd({"epochs": 4, "batch_size": 64, "seed": 1}, device="cuda")
    fe.models = {"fan": model}
    fe.save(tmp_path)
    loaded = AEFrontEnd.load(tmp_path, device="cpu")
    on_cpu = reconstruction_residuals(loaded.models["fan"], clips[:5], device="cpu")
    for g, c in zip(on_gpu, on_cpu, strict=True):
        np.testing.assert_allclose(g, c, rtol=1e-3, atol=1e-3)


def test_dualcnn_trained_on_cuda_with_bf16_embeds_the_same_on_cpu(tmp_path: Path):
    from stethoscope.models.dualcnn import DualCNNConfig, DualCNNFrontEnd, embed, train_dualcnn

    waves, labels = _toy_clips(6, 4, 2.0)
    cfg = DualCNNConfig(
        input_seconds=1.0, epochs=2, batch_size=8, n_subclusters=4, seed=3, amp=True
    )
    model, history = train_dualcnn(waves, labels, 4, cfg, device="cuda")
    assert history[-1]["loss_main"] < history[0]["loss_main"]
    e_gpu = embed(model, waves, device="cuda")
    fe = DualCNNFrontEnd({"input_seconds": 1.0, "n_subclusters": 4}, device="cuda")
    fe.members, fe.class_names = [model], ["a", "b", "c", "d"]
    fe.save(tmp_path)
    e_cpu = embed(DualCNNFrontEnd.load(tmp_path, device="cpu").members[0], waves, device="cpu")
    assert e_gpu.shape == e_cpu.shape == (len(waves), 256)
    assert _cosine(e_gpu, e_cpu).min() > 0.999


def test_cuda_training_resumes_and_leaves_global_state(tmp_path: Path):
    from stethoscope.models.dualcnn import DualCNNConfig, train_dualcnn

    waves, labels = _toy_clips(4, 2, 1.0)
    cfg = DualCNNConfig(epochs=2, batch_size=4, n_subclusters=2, seed=1)
    cuda_state, cpu_state = torch.cuda.get_rng_state(), torch.get_rng_state()
    bench = torch.backends.cudnn.benchmark

    class Stop(Exception):
        pass

    def stop_at_1(stage: str, done: float, total: int, m: dict) -> None:
        assert torch.backends.cudnn.benchmark  # fixed shapes: cuDNN picks its kernels
        if done == 1:
            raise Stop

    with pytest.raises(Stop):
        train_dualcnn(waves, labels, 2, cfg, "cuda", progress=stop_at_1, work_dir=tmp_path)
    _, hist = train_dualcnn(waves, labels, 2, cfg, "cuda", work_dir=tmp_path)
    assert [h["epoch"] for h in hist] == [1, 2]
    assert torch.backends.cudnn.benchmark == bench
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
    assert torch.equal(torch.get_rng_state(), cpu_state)


def test_acae_trained_on_cuda_embeds_the_same_on_cpu(tmp_path: Path):
    from stethoscope.models.acae import (
        ACAEConfig,
        ACAEFrontEnd,
        embed,
        reconstruction_error,
        train_acae,
    )

    waves, labels = _toy_clips(8, 2, 0.6)
    params: dict = dict(
        input_seconds=0.5,
        freq_bins=32,
        channels=(4, 8),
        d_model=16,
        latent_dim=8,
        heads=2,
        dropout=0.0,
        batch_size=8,
        lr=3e-3,
        epochs=3,
        seed=0,
    )
    model, head, history = train_acae(waves, labels, 2, ACAEConfig(**params), device="cuda")
    assert history[-1]["loss"] < history[0]["loss"]
    z_gpu = embed(model, waves, device="cuda")
    r_gpu = reconstruction_error(model, waves, device="cuda")
    fe = ACAEFrontEnd(params, device="cuda")
    fe.model, fe.head, fe.class_names = model, head, ["a", "b"]
    fe.save(tmp_path)
    cpu_model = ACAEFrontEnd.load(tmp_path, device="cpu").model
    assert cpu_model is not None
    z_cpu = embed(cpu_model, waves, device="cpu")
    assert _cosine(z_gpu, z_cpu).min() > 0.999
    np.testing.assert_allclose(
        r_gpu, reconstruction_error(cpu_model, waves, device="cpu"), rtol=1e-3
    )
