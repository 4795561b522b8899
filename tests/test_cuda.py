"""CUDA paths: the same numbers as on the CPU, and models trained on a GPU that load and score on a CPU.

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
from stethoscope.state_io import load_state, save_state
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
    for row, got, ref_cpu in zip(rows, gpu.features, cpu.features):
        ref = np.load(folder / row["npy"])
        assert got.shape == ref.shape and got.dtype == np.float32
        err = np.abs(got.astype(np.float64) - ref)
        assert err.max() <= 0.1, row["npy"]
        assert np.mean(err <= 0.01) >= 0.999, row["npy"]
        assert np.abs(got - ref_cpu).max() <= 1e-2, row["npy"]


def test_ae_trained_on_cuda_scores_the_same_on_cpu(tmp_path: Path):
    from stethoscope.models.ae import AEConfig, read_model, reconstruction_residuals, save_model, train_ae

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(4, 640)) / 2.0
    clips = [(rng.normal(size=(50, 4)) @ basis + 0.05 * rng.normal(size=(50, 640))).astype(np.float32)
             for _ in range(20)]
    cfg = AEConfig(epochs=4, batch_size=64, seed=1, device="cuda")
    model, history = train_ae(clips, cfg)
    assert next(model.parameters()).is_cuda
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    on_gpu = reconstruction_residuals(model, clips[:5], device="cuda")
    save_model(tmp_path, model.cpu())
    loaded, _ = read_model(tmp_path)
    on_cpu = reconstruction_residuals(loaded, clips[:5], device="cpu")
    for g, c in zip(on_gpu, on_cpu):
        np.testing.assert_allclose(g, c, rtol=1e-3, atol=1e-3)


def test_dualcnn_trained_on_cuda_with_bf16_embeds_the_same_on_cpu(tmp_path: Path):
    from stethoscope.models.dualcnn import (DualCNNConfig, embed, load_model, model_meta, model_state,
                                            train_dualcnn)

    waves, labels = _toy_clips(6, 4, 2.0)
    cfg = DualCNNConfig(input_seconds=1.0, epochs=2, batch_size=8, n_subclusters=4, seed=3,
                        device="cuda", amp=True)
    model, history = train_dualcnn(waves, labels, 4, cfg)
    assert all(np.isfinite(h["loss"]) for h in history)
    e_gpu = embed(model, waves, device="cuda")
    save_state(tmp_path, "dualcnn", model_state(model), model_meta(model))
    arrays, meta = load_state(tmp_path, "dualcnn")
    e_cpu = embed(load_model(arrays, meta, device="cpu"), waves, device="cpu")
    assert np.isfinite(e_gpu).all() and e_gpu.shape == e_cpu.shape == (len(waves), 256)
    assert _cosine(e_gpu, e_cpu).min() > 0.999


def test_acae_trained_on_cuda_embeds_the_same_on_cpu(tmp_path: Path):
    from stethoscope.models.acae import (ACAEConfig, embed, load_model, model_meta, model_state,
                                         reconstruction_error, train_acae)

    waves, labels = _toy_clips(8, 2, 0.6)
    cfg = ACAEConfig(input_seconds=0.5, freq_bins=32, channels=(4, 8), d_model=16, latent_dim=8,
                     heads=2, dropout=0.0, batch_size=8, lr=3e-3, epochs=3, seed=0, device="cuda")
    model, head, history = train_acae(waves, labels, 2, cfg)
    assert all(np.isfinite(h["loss"]) for h in history)
    z_gpu = embed(model, waves, device="cuda")
    r_gpu = reconstruction_error(model, waves, device="cuda")
    save_state(tmp_path, "acae", model_state(model, head), model_meta(model, head))
    arrays, meta = load_state(tmp_path, "acae")
    cpu_model, _ = load_model(arrays, meta, device="cpu")
    z_cpu = embed(cpu_model, waves, device="cpu")
    assert _cosine(z_gpu, z_cpu).min() > 0.999
    np.testing.assert_allclose(r_gpu, reconstruction_error(cpu_model, waves, device="cpu"), rtol=1e-3)
