"""ACAE (system 3): features, network shapes, noisy-ArcMix, training and resume, the front end and
its saved form."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from stethoscope.data.clip import Clip
from stethoscope.errors import ConfigError, ModelError
from stethoscope.models.acae import (
    ACAE,
    ACAEConfig,
    ACAEFrontEnd,
    ArcFaceHead,
    FeatureSpec,
    acae_features,
    embed,
    fit_length,
    moving_average,
    noisy_arcmix_loss,
    reconstruction_error,
    train_acae,
)
from stethoscope.models.acae.inputs import stack_waves

TINY = dict(
    input_seconds=0.5,
    freq_bins=32,
    channels=(4, 8),
    d_model=16,
    latent_dim=8,
    heads=2,
    dropout=0.0,
    batch_size=8,
    lr=3e-3,
    epochs=20,
    seed=0,
)


def _f(t: torch.Tensor) -> float:
    return float(t.detach())


def _np_ce(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy computed from scratch (log-sum-exp) in float64."""
    mx = logits.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=1))
    return float(np.mean(lse - logits[np.arange(len(y)), y]))


def _np_arcface_logits(
    z: np.ndarray, w: np.ndarray, margin_on: np.ndarray, s: float, m: float
) -> np.ndarray:
    """s*cos(theta) everywhere, s*cos(theta + m) in column margin_on[i] of row i (theta + m < pi
    here)."""
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = zn @ wn.T
    theta = np.arccos(np.clip(cos, -1, 1))
    rows = np.arange(len(z))
    assert np.all(theta[rows, margin_on] + m < math.pi)  # stays in the plain-ArcFace regime
    logits = s * cos
    logits[rows, margin_on] = s * np.cos(theta[rows, margin_on] + m)
    return logits


@pytest.fixture
def head_and_batch():
    torch.manual_seed(0)
    head = ArcFaceHead(16, 5, s=30.0, m=0.7).double()
    z = torch.randn(12, 16, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    y_a = torch.randint(0, 5, (12,), generator=g)
    y_b = torch.randint(0, 5, (12,), generator=g)
    return head, z, y_a, y_b


def test_noisy_arcmix_with_lam_one_is_arcface_cross_entropy(head_and_batch):
    head, z, y_a, y_b = head_and_batch
    w = head.weight.detach().numpy()
    expected = _np_ce(_np_arcface_logits(z.numpy(), w, y_a.numpy(), 30.0, 0.7), y_a.numpy())
    got = _f(noisy_arcmix_loss(head, z, y_a, y_b, 1.0))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_margin_is_applied_only_to_y_a(head_and_batch):
    head, z, y_a, y_b = head_and_batch
    plain = head(z).detach().numpy()
    marg = head(z, y_a).detach().numpy()
    mask = np.zeros_like(plain, dtype=bool)
    mask[np.arange(len(z)), y_a.numpy()] = True
    np.testing.assert_array_equal(marg[~mask], plain[~mask])  # every other column untouched
    assert np.all(marg[mask] < plain[mask])  # the target column lost margin

    # lam < 1: both CE terms use the one matrix with the margin on y_a; y_b's column has none.
    lam = 0.3
    w = head.weight.detach().numpy()
    logits = _np_arcface_logits(z.numpy(), w, y_a.numpy(), 30.0, 0.7)
    expected = lam * _np_ce(logits, y_a.numpy()) + (1 - lam) * _np_ce(logits, y_b.numpy())
    assert _f(noisy_arcmix_loss(head, z, y_a, y_b, lam)) == pytest.approx(expected, rel=1e-9)
    # ...which is not ArcMix (margin on y_b for the y_b term) wherever y_b differs from y_a
    assert (y_a != y_b).any()
    arcmix_b = _np_ce(_np_arcface_logits(z.numpy(), w, y_b.numpy(), 30.0, 0.7), y_b.numpy())
    assert _f(noisy_arcmix_loss(head, z, y_a, y_b, 0.0)) < arcmix_b
    # changing only y_b never moves the margin
    y_b2 = (y_b + 1) % 5
    same = _f(noisy_arcmix_loss(head, z, y_a, y_b, 1.0))
    assert _f(noisy_arcmix_loss(head, z, y_a, y_b2, 1.0)) == same


def test_margin_cosine_is_continuous_and_decreasing():
    head = ArcFaceHead(4, 2, m=0.7).double()
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    phi = head.margin_cosine(torch.cos(theta))
    assert torch.all(phi[1:] <= phi[:-1] + 1e-12)
    assert float(phi.diff().abs().max()) < 1e-2  # no jump at theta = pi - m
    inner = (theta > 1e-3) & (theta < math.pi - 0.7)  # sin is floored at 0 for a finite gradient
    torch.testing.assert_close(phi[inner], torch.cos(theta[inner] + 0.7))


def test_moving_average_identity_and_manual():
    x = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(moving_average(x, 1), x)
    y = moving_average(x, 3)
    manual = torch.empty_like(x)
    for t in range(10):
        manual[..., t] = x[..., max(0, t - 1) : t + 2].mean(dim=-1)
    torch.testing.assert_close(y, manual)
    with pytest.raises(ValueError):
        moving_average(x, 2)


def test_fit_length_tiles_and_crops():
    w = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(w, 12), np.tile(w, 3)[:12])
    np.testing.assert_array_equal(fit_length(w, 3), w[:3])
    np.testing.assert_array_equal(fit_length(w, 4, offset=3), [3, 4, 0, 1])


def test_features_shape_and_frequency_options():
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32))
    for kw, n_freq in [({}, 513), ({"max_freq_hz": 4000.0}, 257), ({"freq_bins": 64}, 64)]:
        spec = (
            FeatureSpec(input_samples=8000, freq_bins=None, **kw)
            if "freq_bins" not in kw
            else FeatureSpec(input_samples=8000, **kw)
        )
        f = acae_features(wave, spec)
        assert f.shape == (2, *spec.shape()) and spec.shape() == (n_freq, 16)
        assert float(f.min()) >= -100.0  # the -100 dB floor of the log
    # a 1 kHz tone peaks in STFT bin 1000 * 1024 / 16000 = 64 (frames away from the edges)
    tone = torch.sin(2 * math.pi * 1000.0 * torch.arange(8000) / 16000)[None]
    peak = acae_features(tone, FeatureSpec(input_samples=8000, freq_bins=None)).argmax(dim=1)
    assert peak[0, 2:-2].tolist() == [64] * 12
    # averaging is applied on top of the log spectrogram
    spec1 = FeatureSpec(input_samples=8000, avg_window=1)
    spec3 = FeatureSpec(input_samples=8000, avg_window=3)
    torch.testing.assert_close(
        acae_features(wave, spec3), moving_average(acae_features(wave, spec1), 3)
    )


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("freq_bins", [32, 37])
def test_model_reconstructs_input_shape(attention, freq_bins):
    cfg = ACAEConfig(
        **{**TINY, "freq_bins": freq_bins, "attention": attention, "input_seconds": 0.6}
    )
    model = ACAE(cfg).eval()
    n_freq, n_frames = cfg.feature_spec().shape()
    x = torch.randn(3, n_freq, n_frames)
    recon, z = model(x)
    assert recon.shape == x.shape and z.shape == (3, cfg.latent_dim)
    assert (model.attention is not None) == attention


def _toy_clips(n_per_class: int = 12, seconds: float = 0.5) -> tuple[list[np.ndarray], np.ndarray]:
    """Two 'machines': harmonic tones at different fundamentals in noise, lengths varying."""
    rng = np.random.default_rng(0)
    waves, labels = [], []
    for label, f0 in enumerate((300.0, 700.0)):
        for _ in range(n_per_class):
            n = int(16000 * seconds * rng.uniform(0.7, 1.3))
            t = np.arange(n) / 16000
            tone = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3))
            waves.append((0.1 * tone + 0.02 * rng.standard_normal(n)).astype(np.float32))
            labels.append(label)
    return waves, np.array(labels)


def _clips(labels: np.ndarray) -> list[Clip]:
    return [
        Clip(
            Path(f"/d/fan/train/{i}.wav"),
            "fan",
            "00",
            "train",
            "source",
            "normal",
            f"{i:04d}",
            f"kind_{c}",
        )
        for i, c in enumerate(labels)
    ]


@pytest.fixture(scope="module")
def trained():
    waves, labels = _toy_clips()
    calls = []
    model, head, history = train_acae(
        waves,
        labels,
        2,
        ACAEConfig(**TINY),
        "cpu",
        progress=lambda s, d, n, m: calls.append((s, d, n)),
    )
    return waves, labels, model, head, history, calls


def test_training_runs_and_loss_decreases(trained):
    waves, labels, model, head, history, calls = trained
    assert len(history) == TINY["epochs"] and calls[-1] == ("acae: epochs", 20, 20)
    assert {"loss", "recon", "arc", "lr"} <= set(history[0])
    for h in history:
        assert h["loss"] == pytest.approx(h["recon"] + h["arc"], rel=1e-5)  # weights 1 and 1
    # cosine schedule, per step: 3 steps per epoch (24 clips, batch 8), last step of epoch 20
    assert history[-1]["lr"] == pytest.approx(0.5 * 3e-3 * (1 + math.cos(math.pi * 59 / 60)))
    loss = [h["loss"] for h in history]
    assert np.mean(loss[-3:]) < 0.5 * np.mean(loss[:3])
    # reconstruction of the clean (unmixed) clips improves over the untrained network (same init)
    untrained, _, _ = train_acae(waves, labels, 2, ACAEConfig(**{**TINY, "epochs": 0}), "cpu")
    err = reconstruction_error(model, waves)
    assert err.mean() < 0.95 * reconstruction_error(untrained, waves).mean()
    # a clip longer than the input is the mean over its windows, computed here one by one
    from stethoscope.models.clip_length import window_starts

    spec = model.cfg.feature_spec()
    n = spec.input_samples
    direct = []
    with torch.no_grad():
        for w in waves:
            parts = [w[s : s + n] for s in window_starts(len(w), n)] if len(w) > n else [w]
            x = model.normalize(acae_features(stack_waves(parts, n), spec))
            direct.append(((model(x)[0] - x) ** 2).mean(dim=(1, 2)).mean().item())
    assert sum(len(w) > n for w in waves) >= 5  # the windows are exercised
    np.testing.assert_allclose(err, direct, rtol=1e-5)
    z = embed(model, waves)
    assert z.shape == (len(waves), TINY["latent_dim"])
    # the embedding separates the two toy classes (cosine to class means)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    centres = np.stack([zn[labels == c].mean(0) for c in (0, 1)])
    assert (np.argmax(zn @ centres.T, axis=1) == labels).mean() > 0.9


def test_training_is_deterministic(trained):
    waves, labels, model, _, history, _ = trained
    cfg = ACAEConfig(**{**TINY, "epochs": 2, "dropout": 0.3})
    rng_state = torch.get_rng_state()
    a = train_acae(waves, labels, 2, cfg, "cpu")
    assert torch.equal(torch.get_rng_state(), rng_state)  # dropout drew from a forked generator
    torch.manual_seed(1234)  # the global generator plays no part
    b = train_acae(waves, labels, 2, cfg, "cpu")
    np.testing.assert_array_equal(embed(a[0], waves), embed(b[0], waves))


def test_resume_with_dropout_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    waves, labels = _toy_clips(6)
    cfg = ACAEConfig(**{**TINY, "epochs": 3, "dropout": 0.3})
    full, full_head, _ = train_acae(waves, labels, 2, cfg, "cpu")

    class Stop(Exception):
        pass

    def stop_at_1(stage: str, done: float, total: int, m: dict) -> None:
        if done == 1:
            raise Stop

    with pytest.raises(Stop):
        train_acae(waves, labels, 2, cfg, "cpu", progress=stop_at_1, work_dir=tmp_path)
    model, head, hist = train_acae(waves, labels, 2, cfg, "cpu", work_dir=tmp_path)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    for a, b in ((model, full), (head, full_head)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sb)
    with pytest.raises(ModelError, match="acae.dropout: 0.3 then, 0.2 now"):
        train_acae(
            waves,
            labels,
            2,
            ACAEConfig(**{**TINY, "epochs": 3, "dropout": 0.2}),
            "cpu",
            work_dir=tmp_path,
        )


def test_frontend_save_load_gives_identical_outputs(trained, tmp_path):
    waves, labels, model, head, _, _ = trained
    fe = ACAEFrontEnd(TINY, device="cpu")
    fe.model, fe.head, fe.class_names = model, head, ["a", "b"]
    fe.save(tmp_path / "m")
    fe2 = ACAEFrontEnd.load(tmp_path / "m", device="cpu")
    assert fe2.class_names == ["a", "b"] and fe2.cfg == fe.cfg
    clips = _clips(labels)
    for output in ("embedding", "recon-error"):
        np.testing.assert_array_equal(
            fe.transform(clips, waves, output), fe2.transform(clips, waves, output)
        )
    z = torch.from_numpy(embed(model, waves[:4]))
    torch.testing.assert_close(head(z), fe2.head(z), rtol=0, atol=0)
    meta = json.loads((tmp_path / "m" / "frontend.json").read_text())
    meta["config"]["input_seconds"] = 1e9  # would ask for a 1e9-second input at scoring time
    (tmp_path / "m" / "frontend.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="input_seconds must be in"):
        ACAEFrontEnd.load(tmp_path / "m", device="cpu")


def test_frontend_fit_and_mse_only_ablation_round_trip(tmp_path):
    waves, labels = _toy_clips(6)
    clips = _clips(labels)
    params = {**TINY, "arcmix": False, "attention": False, "epochs": 2}
    del params["input_seconds"]  # the median training clip (models/clip_length.py)
    fe = ACAEFrontEnd(params, device="cpu")
    fe.fit(clips, waves, work_dir=tmp_path / "work")
    assert fe.head is None and fe.model is not None and fe.model.attention is None
    assert fe.cfg.input_seconds == int(np.median([len(w) for w in waves])) / 16000
    assert fe.class_names == ["fan|00|kind_0", "fan|00|kind_1"]
    fe.save(tmp_path / "m")
    fe2 = ACAEFrontEnd.load(tmp_path / "m", device="cpu")
    assert fe2.head is None and fe2.model is not None and fe2.model.attention is None
    np.testing.assert_array_equal(
        fe.transform(clips, waves, "embedding"), fe2.transform(clips, waves, "embedding")
    )
    with pytest.raises(ConfigError, match="not 'views'"):
        fe2.transform(clips, waves, "views")


def test_rejects_bad_labels_and_settings():
    waves, labels = _toy_clips(3)
    with pytest.raises(ValueError):
        train_acae(waves, labels + 5, 2, ACAEConfig(**TINY), "cpu")
    with pytest.raises(ConfigError, match="unknown ACAEConfig setting"):
        ACAEFrontEnd({"chanels": [4]})
    with pytest.raises(ConfigError, match="avg_window"):
        ACAEFrontEnd({"avg_window": 2})
