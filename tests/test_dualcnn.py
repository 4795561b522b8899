"""Dual-branch CNN: features, shapes, loss, training, embeddings and persistence (all CPU, seconds)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from stethoscope.models.dualcnn import (
    ArchConfig,
    DualBranchCNN,
    DualCNNConfig,
    SpectrogramFeature,
    SpectrumFeature,
    SubClusterAdaCos,
    embed,
    embed_views,
    feature_exchange,
    fit_length,
    load_model,
    logits,
    mixup,
    model_meta,
    model_state,
    train_dualcnn,
    view_crops,
)
from stethoscope.models.dualcnn.frontend import n_frames
from stethoscope.models.dualcnn.trainer import _add_noise
from stethoscope.state_io import load_state, save_state

SR = 16_000


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _toy_clips(n_per_class: int = 6, n_classes: int = 4, seconds: float = 2.0, seed: int = 0):
    """Tones + noise, one fundamental per class; lengths vary a little (never assume one length)."""
    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for c in range(n_classes):
        for _ in range(n_per_class):
            n = int(SR * seconds) - int(rng.integers(0, SR // 4))
            t = np.arange(n) / SR
            f0 = 150.0 * (c + 1)
            w = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) / h for h in (1, 2, 3))
            waves.append((0.1 * w + 0.05 * rng.standard_normal(n)).astype(np.float32))
            labels.append(c)
    return waves, np.array(labels)


# ------------------------------------------------------------------------------------------ features

def test_fit_length_tile_and_pad():
    w = np.arange(5, dtype=np.float32)
    tiled, n = fit_length(w, 12, "tile")
    assert n == 12 and tiled.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    shifted, _ = fit_length(w, 4, "tile", offset=3)
    assert shifted.tolist() == [3, 4, 0, 1]
    padded, n = fit_length(w, 8, "pad")
    assert n == 5 and padded.tolist() == [0, 1, 2, 3, 4, 0, 0, 0]
    cropped, n = fit_length(w, 3, "pad")
    assert n == 3 and cropped.tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        fit_length(np.zeros(0), 4)


def test_temporal_mean_ignores_padded_frames():
    rng = np.random.default_rng(1)
    real = rng.standard_normal(20_000).astype(np.float32) * np.linspace(0.2, 1.0, 20_000, dtype=np.float32)
    padded, n = fit_length(real, 32_000, "pad")
    feat = SpectrogramFeature()
    a = feat(torch.from_numpy(real)[None], torch.tensor([len(real)]))
    b = feat(torch.from_numpy(padded)[None], torch.tensor([n]))
    k = n_frames(len(real))
    assert a.shape[1:] == (513, k) and b.shape[2] == n_frames(32_000) > k
    torch.testing.assert_close(b[:, :, :k], a, rtol=1e-5, atol=1e-5)
    assert torch.all(b[:, :, k:] == 0)
    # the bin means over the real frames are removed
    assert float(a.mean(2).abs().max()) < 1e-4
    # without the length mask the padding would bias the mean
    c = feat(torch.from_numpy(padded)[None], torch.tensor([32_000]))
    assert not torch.allclose(c[:, :, :k], a, atol=1e-3)


def test_spectrum_feature_keeps_bins_up_to_8k():
    f = SpectrumFeature(SR * 10, SR, 8000.0)
    assert f.n_bins == SR * 10 // 2 + 1
    assert SpectrumFeature(SR * 10, SR, 4000.0).n_bins == 40_001
    x = torch.from_numpy(np.sin(2 * np.pi * 1000 * np.arange(SR) / SR).astype(np.float32))[None]
    assert int(SpectrumFeature(SR, SR)(x).argmax()) == 1000


@pytest.mark.parametrize("seconds", [10, 11, 12])
def test_output_shapes(seconds):
    torch.manual_seed(0)
    model = DualBranchCNN(ArchConfig(input_len=seconds * SR)).eval()
    wave = torch.randn(2, seconds * SR) * 0.1
    with torch.no_grad():
        e_spec, e_spectrum = model(wave, torch.tensor([seconds * SR, 7 * SR]))
        emb = model.embed(wave)
    assert e_spec.shape == (2, 128) and e_spectrum.shape == (2, 128) and emb.shape == (2, 256)
    assert model.spec_branch.flat_dim == 128 * 16
    assert not any(m.bias is not None for m in (model.spec_branch.out, model.spectrum_branch.out))
    with pytest.raises(ValueError):
        model(torch.zeros(1, SR))
    with pytest.raises(ValueError, match="too short"):
        DualBranchCNN(ArchConfig(input_len=2048))


# -------------------------------------------------------------------------------------------- losses

def test_subcluster_adacos_loss_decreases_on_separable_problem():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=gen) * 3
    y = torch.arange(4).repeat_interleave(32)
    x = centres[y] + torch.randn(len(y), 16, generator=gen)
    torch.manual_seed(0)
    net = torch.nn.Linear(16, 8, bias=False)
    head = SubClusterAdaCos(8, 4, n_subclusters=4, seed=0)
    assert not any(True for _ in head.parameters())  # fixed centres by default
    s0 = float(head.scale)
    assert s0 == pytest.approx(np.sqrt(2) * np.log(4 * 4 - 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    target = torch.nn.functional.one_hot(y, 4).float()
    losses = []
    for _ in range(150):
        loss = head(net(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    # the adaptive scale shrinks as classes separate, so the loss settles well above 0
    assert losses[-1] < 0.3 * losses[0] and losses[-1] < min(losses[:10])
    assert np.isfinite(float(head.scale)) and float(head.scale) != s0  # the scale adapted
    head.eval()
    acc = (head.class_logits(net(x)).argmax(1) == y).float().mean()
    assert float(acc) == 1.0


def test_learnable_centres_are_parameters():
    head = SubClusterAdaCos(8, 3, n_subclusters=2, learnable_centres=True)
    assert [p.shape for p in head.parameters()] == [torch.Size([6, 8])]


def test_mixup_and_feature_exchange_labels():
    gen = torch.Generator().manual_seed(0)
    wave = torch.randn(16, 100, generator=gen)
    y = torch.nn.functional.one_hot(torch.arange(16) % 4, 4).float()
    lens = torch.full((16,), 100)
    w2, l2, y2 = mixup(wave, lens, y, 0.5, gen)
    assert w2.shape == wave.shape and torch.allclose(y2.sum(1), torch.ones(16))
    mixed = ~torch.all(w2 == wave, dim=1)
    assert 0 < int(mixed.sum()) < 16  # some, not all, samples mixed
    a, b = torch.randn(16, 3, generator=gen), torch.randn(16, 5, generator=gen)
    emb, y3 = feature_exchange(a, b, y, 0.5, gen)
    assert emb.shape == (16, 8) and y3.shape == (16, 12)
    torch.testing.assert_close(y3.sum(1), torch.ones(16))
    ex = y3[:, :4].sum(1) == 0
    assert 0 < int(ex.sum()) < 16
    assert torch.equal(emb[:, :3], a)  # spectrogram part never moves
    assert torch.equal(emb[~ex, 3:], b[~ex])  # unexchanged keep their own spectrum part
    assert not torch.equal(emb[ex, 3:], b[ex])
    torch.testing.assert_close(y3[ex, 4:8], 0.5 * y[ex])  # block 1: the spectrogram clip's class


def test_supplemental_noise_is_added_at_the_drawn_snr():
    gen = torch.Generator().manual_seed(0)
    wave = torch.randn(4, 8000, generator=gen)
    bank = torch.randn(3, 8000, generator=gen) * 7.0
    cfg = DualCNNConfig(noise_p=1.0, noise_snr_db=(10.0, 10.0))
    lens = torch.tensor([8000, 8000, 8000, 4000])
    added = _add_noise(wave, lens, bank, cfg, gen) - wave
    snr = 10 * torch.log10(wave[:3].pow(2).mean(1) / added[:3].pow(2).mean(1))
    torch.testing.assert_close(snr, torch.full((3,), 10.0), atol=1e-3, rtol=0)
    assert torch.all(added[3, 4000:] == 0)  # never into the padding


# ------------------------------------------------------------------------------------------ training

@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    waves, labels = _toy_clips()
    cfg = DualCNNConfig(input_seconds=1.0, epochs=2, batch_size=8, n_subclusters=4, seed=3, device="cpu")
    seen = []
    t0 = time.perf_counter()
    model, history = train_dualcnn(waves, labels, 4, cfg, progress=lambda e, n, m: seen.append((e, n)))
    return model, history, waves, seen, time.perf_counter() - t0


def test_train_end_to_end(trained):
    model, history, _, seen, seconds = trained
    assert seen == [(1, 2), (2, 2)]
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
    assert all(h["loss_featex"] > 0 for h in history) and history[-1]["clips_per_s"] > 0
    assert model.cfg.input_len == SR and not model.training
    assert seconds < 30


def test_embed_shapes_and_logits(trained):
    model, _, waves, _, _ = trained
    e = embed(model, waves[:5], device="cpu", batch_size=2)
    assert e.shape == (5, 256) and np.isfinite(e).all()
    en = embed(model, waves[:5], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(en, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(en, e / np.linalg.norm(e, axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    v = embed_views(model, waves[:3], n_views=4, crop_seconds=0.5)
    assert v.shape == (3, 4, 256)
    assert not np.allclose(v[:, 0], v[:, 1])  # different crops give different embeddings
    assert embed_views(model, waves[:3], n_views=2).shape == (3, 2, 256)
    lg = logits(model, waves[:5])
    assert lg.shape == (5, 4) and np.isfinite(lg).all()


def test_views_are_the_embeddings_of_their_crops_in_any_batching(trained):
    model, _, waves, _, _ = trained
    v = embed_views(model, waves[:3], n_views=3, crop_seconds=0.5, batch_size=2)  # batches cut views
    crops = [w for wave in waves[:3] for w, _ in view_crops(wave, 3, SR // 2, model.cfg.input_len)]
    e = embed(model, crops, batch_size=5).reshape(3, 3, -1)
    np.testing.assert_allclose(v, e, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(embed(model, waves[:5], batch_size=2), embed(model, waves[:5], batch_size=64),
                               rtol=1e-4, atol=1e-5)


def test_views_are_built_batch_by_batch_not_all_at_once(trained):
    import tracemalloc

    model, _, waves, _, _ = trained
    many = waves * 2
    all_views = len(many) * 8 * model.cfg.input_len * 4  # bytes, were every view built up front
    tracemalloc.start()
    try:
        embed_views(model, many, n_views=8, batch_size=4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < all_views / 4, f"peak {peak / 1e6:.1f} MB of {all_views / 1e6:.1f} MB"


def test_save_load_round_trip(trained, tmp_path):
    model, _, waves, _, _ = trained
    save_state(tmp_path, "dualcnn", model_state(model), model_meta(model))
    arrays, meta = load_state(tmp_path, "dualcnn")
    loaded = load_model(arrays, meta)
    np.testing.assert_array_equal(embed(loaded, waves[:4]), embed(model, waves[:4]))
    np.testing.assert_array_equal(logits(loaded, waves[:4]), logits(model, waves[:4]))
    with pytest.raises(ValueError):
        load_model(arrays, {**meta, "format": "other"})


def test_training_is_deterministic_and_supports_pad_and_noise():
    waves, labels = _toy_clips(n_per_class=3, n_classes=2, seconds=1.0, seed=5)
    noise = [np.random.default_rng(9).standard_normal(SR // 2).astype(np.float32)]
    cfg = DualCNNConfig(epochs=1, batch_size=6, n_subclusters=2, fit_mode="pad", device="cpu",
                        supplemental_noise=True, noise_p=1.0)
    _, h1 = train_dualcnn(waves, labels, 2, cfg, noise_waves=noise)
    m2, h2 = train_dualcnn(waves, labels, 2, cfg, noise_waves=noise)
    assert h1[0]["loss"] == h2[0]["loss"]
    assert m2.cfg.input_len == max(len(w) for w in waves) and m2.cfg.fit_mode == "pad"
    # no noise clips found: train without (and say so) rather than fail a long pipeline
    _, h3 = train_dualcnn(waves, labels, 2, DualCNNConfig(epochs=1, batch_size=6, n_subclusters=2, device="cpu",
                                                          supplemental_noise=True), noise_waves=[])
    assert np.isfinite(h3[0]["loss"])
    with pytest.raises(ValueError):
        train_dualcnn(waves, labels + 5, 2, cfg)
