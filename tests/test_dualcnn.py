"""Dual-branch CNN: features, shapes, losses, training and resume, embeddings, the front end and
its saved form (all CPU, seconds)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stethoscope.data.clip import Clip
from stethoscope.errors import ModelError
from stethoscope.models.clip_length import typical_length, window_starts
from stethoscope.models.dualcnn import (
    ArchConfig,
    DualBranchCNN,
    DualCNNConfig,
    DualCNNFrontEnd,
    SpectrogramFeature,
    SpectrumFeature,
    SubClusterAdaCos,
    embed,
    embed_views,
    feature_exchange,
    fit_length,
    logits,
    mixup,
    train_dualcnn,
    view_crops,
)
from stethoscope.models.dualcnn.inputs import n_frames
from stethoscope.models.dualcnn.training import add_noise

SR = 16_000


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


# -------------------------------------------------------------------------------------- features


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
    ramp = np.linspace(0.2, 1.0, 20_000, dtype=np.float32)
    real = rng.standard_normal(20_000).astype(np.float32) * ramp
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


# ---------------------------------------------------------------------------------------- losses


def test_subcluster_adacos_loss_decreases_on_separable_problem():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=gen) * 3
    y = torch.arange(4).repeat_interleave(32)
    x = centres[y] + torch.randn(len(y), 16, generator=gen)
    torch.manual_seed(0)
    net = torch.nn.Linear(16, 8, bias=False)
    head = SubClusterAdaCos(8, 4, n_subclusters=4, seed=0)
    assert not any(True for _ in head.parameters())  # fixed centres by default
    assert float(head.scale) == pytest.approx(np.sqrt(2) * np.log(4 * 4 - 1))
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
    head.eval()
    acc = (head.class_logits(net(x)).argmax(1) == y).float().mean()
    assert float(acc) == 1.0


def test_adacos_scale_update_follows_its_formula():
    """s <- log(B_avg) / cos(min(pi/4, theta_med)), recomputed in float64 from its definition."""
    gen = torch.Generator().manual_seed(0)
    head = SubClusterAdaCos(8, 3, n_subclusters=2, seed=1)
    emb = torch.randn(5, 8, generator=gen)
    target = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.3, 0.7, 0], [1, 0, 0]])
    s0 = float(head.scale)
    assert s0 == pytest.approx(np.sqrt(2) * np.log(3 * 2 - 1), rel=1e-7)
    loss = float(head(emb, target))

    e = emb.double().numpy()
    w = head.centres.double().numpy()
    cos = (
        (e / np.linalg.norm(e, axis=1, keepdims=True))
        @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    ).reshape(5, 3, 2)
    t = target.double().numpy()
    b = (np.exp(s0 * cos) * (t == 0)[:, :, None]).sum(axis=(1, 2))  # non-target sub-clusters
    theta = np.arccos(cos).min(axis=2)  # angle to each class's nearest sub-cluster
    theta_med = np.median((t * theta).sum(1) / t.sum(1))  # label-weighted angle to own class
    expected = np.log(b.mean()) / np.cos(min(np.pi / 4, theta_med))
    assert float(head.scale) == pytest.approx(expected, rel=1e-5)
    # the loss of this step already uses the new scale
    logits = expected * cos
    log_p = np.log(np.exp(logits).sum(2)) - np.log(
        np.exp(logits.reshape(5, -1)).sum(1, keepdims=True)
    )
    assert loss == pytest.approx(-(t * log_p).sum(1).mean(), rel=1e-5)
    # no update in eval mode, nor when every sub-cluster is a target (one class)
    head.eval()
    head(emb, target)
    assert float(head.scale) == pytest.approx(expected, rel=1e-5)
    single = SubClusterAdaCos(8, 1, n_subclusters=2, seed=1)
    before = float(single.scale)
    single(emb, torch.ones(5, 1))
    assert float(single.scale) == before


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
    added = add_noise(wave, lens, bank, cfg, gen) - wave
    snr = 10 * torch.log10(wave[:3].pow(2).mean(1) / added[:3].pow(2).mean(1))
    torch.testing.assert_close(snr, torch.full((3,), 10.0), atol=1e-3, rtol=0)
    assert torch.all(added[3, 4000:] == 0)  # never into the padding


# -------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained():
    waves, labels = _toy_clips()
    cfg = DualCNNConfig(input_seconds=1.0, epochs=2, batch_size=8, n_subclusters=4, seed=3)
    seen = []
    t0 = time.perf_counter()
    model, history = train_dualcnn(
        waves, labels, 4, cfg, "cpu", progress=lambda s, d, n, m: seen.append((s, d, n))
    )
    return model, history, waves, seen, time.perf_counter() - t0


def test_train_end_to_end(trained):
    model, history, _, seen, seconds = trained
    assert seen == [("dualcnn: epochs", 1, 2), ("dualcnn: epochs", 2, 2)]
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert h["loss"] == pytest.approx(h["loss_main"] + h["loss_featex"], rel=1e-6)
        assert h["train_acc"] * 24 == pytest.approx(round(h["train_acc"] * 24))  # hits of 24
        assert h["samples_per_s"] == pytest.approx(24 / h["seconds"])
    assert history[-1]["loss_main"] < history[0]["loss_main"]
    assert history[-1]["scale"] == float(model.head.scale)
    assert model.cfg.input_len == SR and not model.training


def test_embed_shapes_and_logits(trained):
    model, _, waves, _, _ = trained
    e = embed(model, waves[:5], device="cpu", batch_size=2)
    assert e.shape == (5, 256)
    en = embed(model, waves[:5], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(en, axis=1), 1.0, rtol=1e-5)
    # clips of 1.75-2 s against a 1 s input: the mean over each clip's windows
    n = model.cfg.input_len
    for i, w in enumerate(waves[:3]):
        parts = [w[s : s + n] for s in window_starts(len(w), n)]
        assert len(parts) == 2
        we = embed(model, parts)
        np.testing.assert_allclose(e[i], we.mean(axis=0), rtol=1e-4, atol=1e-6)
        wn = we / np.linalg.norm(we, axis=1, keepdims=True)
        mean = wn.mean(axis=0)
        np.testing.assert_allclose(en[i], mean / np.linalg.norm(mean), rtol=1e-4, atol=1e-6)
        win_logits = logits(model, parts)
        np.testing.assert_allclose(
            logits(model, [w])[0], win_logits.mean(axis=0), rtol=1e-4, atol=1e-5
        )
    v = embed_views(model, waves[:3], n_views=4, crop_seconds=0.5)
    assert v.shape == (3, 4, 256)
    assert not np.allclose(v[:, 0], v[:, 1])  # different crops give different embeddings
    assert embed_views(model, waves[:3], n_views=2).shape == (3, 2, 256)
    # logits of one window = log sum_k exp(s cos(e, centre_ck))
    one = [w[:n] for w in waves[:5]]
    en1 = embed(model, one, normalize=True)
    c = model.head.centres.double().numpy()
    cos = en1.astype(np.float64) @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T
    expected = np.log(np.exp(float(model.head.scale) * cos.reshape(5, 4, 4)).sum(2))
    np.testing.assert_allclose(logits(model, one), expected, rtol=1e-4, atol=1e-4)


def test_views_are_the_embeddings_of_their_crops_in_any_batching(trained):
    model, _, waves, _, _ = trained
    v = embed_views(model, waves[:3], n_views=3, crop_seconds=0.5, batch_size=2)  # cuts views
    crops = [w for wave in waves[:3] for w, _ in view_crops(wave, 3, SR // 2, model.cfg.input_len)]
    e = embed(model, crops, batch_size=5).reshape(3, 3, -1)
    np.testing.assert_allclose(v, e, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        embed(model, waves[:5], batch_size=2),
        embed(model, waves[:5], batch_size=64),
        rtol=1e-4,
        atol=1e-5,
    )


def test_dtmm_views_of_one_clip_differ_in_both_branches(trained):
    """Crops hold other content in every view; the old tiled views are circular shifts, which the
    spectrum branch's FFT magnitude cannot tell apart."""
    model, _, waves, _, _ = trained
    length = model.cfg.input_len
    wave = waves[0][:length]  # a clip of exactly the input length

    def branches(views):
        w = torch.from_numpy(np.stack([v for v, _ in views]))
        n = torch.tensor([k for _, k in views])
        with torch.no_grad():
            spec, spectrum = model(w, n)
            fft = model.spectrum(w)
        return spec.numpy(), spectrum.numpy(), fft.numpy()

    def spread(a):  # largest distance of a view from the first, relative to the first
        return max(np.linalg.norm(a[i] - a[0]) / np.linalg.norm(a[0]) for i in range(1, len(a)))

    spec_c, spectrum_c, fft_c = branches(view_crops(wave, 4, None, length))
    spec_t, spectrum_t, fft_t = branches(view_crops(wave, 4, None, length, mode="tiled"))
    assert spread(fft_t) < 1e-5  # tiled: one FFT magnitude in every view
    assert spread(fft_c) > 0.1 and spread(spectrum_c) > 0.05 and spread(spec_c) > 0.05
    assert spread(spectrum_c) > 100 * spread(spectrum_t)


def test_embedding_logits_are_the_heads_logits_of_the_section_classes(trained):
    model, _, waves, _, _ = trained
    fe = _frontend_of(model)
    fe.class_names = ["fan|00|kind_0", "fan|00|kind_1", "valve|00|a", "valve|00|b"]
    inputs = [w[: model.cfg.input_len] for w in waves[:6]]
    x = fe.transform(_clips(6), inputs, "embedding-logits")
    assert x.shape == (6, 256 + 2)  # the two classes of fan section 00
    head = model.head
    e = torch.from_numpy(fe.transform(_clips(6), inputs, "embedding")).float()
    cos = head.cosines(e).double()  # (N, 4 classes, 4 sub-clusters)
    want = float(head.scale) * cos.amax(dim=2)[:, :2].numpy()
    np.testing.assert_allclose(x[:, 256:], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x[:, :256], e.double().numpy(), rtol=1e-6)


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


# ------------------------------------------------------------------------ front end and saved form


def _frontend_of(model: DualBranchCNN, n_classes: int = 4) -> DualCNNFrontEnd:
    fe = DualCNNFrontEnd({"input_seconds": 1.0, "n_subclusters": 4}, device="cpu")
    fe.members, fe.class_names = [model], [f"c{i}" for i in range(n_classes)]
    fe.n_data_classes = n_classes
    return fe


def _clips(n: int) -> list[Clip]:
    return [
        Clip(
            Path(f"/d/fan/train/{i}.wav"),
            "fan",
            "00",
            "train",
            "source",
            "normal",
            f"{i:04d}",
            f"kind_{i % 2}",
        )
        for i in range(n)
    ]


def test_save_load_round_trip_and_checks(trained, tmp_path):
    model, _, waves, _, _ = trained
    fe = _frontend_of(model)
    fe.save(tmp_path / "m")
    loaded = DualCNNFrontEnd.load(tmp_path / "m", device="cpu")
    assert loaded.class_names == fe.class_names and loaded.n_members == 1
    np.testing.assert_array_equal(embed(loaded.members[0], waves[:4]), embed(model, waves[:4]))
    np.testing.assert_array_equal(logits(loaded.members[0], waves[:4]), logits(model, waves[:4]))
    clips = _clips(4)
    np.testing.assert_array_equal(
        loaded.transform(clips, waves[:4], "views"), fe.transform(clips, waves[:4], "views")
    )
    meta = json.loads((tmp_path / "m" / "frontend.json").read_text())
    assert meta["frontend"] == "dualcnn" and meta["arch"]["input_len"] == SR
    # a longer input would change the spectrum branch: caught from the shapes before allocating
    meta["arch"]["input_len"] = 100 * SR
    (tmp_path / "m" / "frontend.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"member_0/spectrum_branch\.mlp\.0\.weight' is F32"):
        DualCNNFrontEnd.load(tmp_path / "m", device="cpu")


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    waves, labels = _toy_clips(n_per_class=4, n_classes=2, seconds=1.0, seed=2)
    cfg = DualCNNConfig(epochs=3, batch_size=4, n_subclusters=2, seed=1, threads=2)
    rng_state, threads = torch.get_rng_state(), torch.get_num_threads()
    torch.backends.cudnn.benchmark = False
    full, full_hist = train_dualcnn(waves, labels, 2, cfg, "cpu")
    assert torch.equal(torch.get_rng_state(), rng_state) and torch.get_num_threads() == threads
    assert torch.backends.cudnn.benchmark is False

    class Stop(Exception):
        pass

    def stop_at_1(stage: str, done: float, total: int, m: dict) -> None:
        if done == 1:
            raise Stop

    with pytest.raises(Stop):
        train_dualcnn(waves, labels, 2, cfg, "cpu", progress=stop_at_1, work_dir=tmp_path)
    model, hist = train_dualcnn(waves, labels, 2, cfg, "cpu", work_dir=tmp_path)
    a, b = model.state_dict(), full.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in hist] == [h["loss"] for h in full_hist]
    with pytest.raises(ModelError, match="n_classes: 2 then, 3 now"):
        train_dualcnn(waves, labels, 3, cfg, "cpu", work_dir=tmp_path)


def test_ensemble_members_and_memoised_embeddings(tmp_path):
    waves, _ = _toy_clips(n_per_class=4, n_classes=2, seconds=1.0, seed=4)
    clips = _clips(len(waves))
    fe = DualCNNFrontEnd(
        {"ensemble": 2, "epochs": 1, "batch_size": 4, "n_subclusters": 2, "n_views": 3},
        device="cpu",
    )
    assert fe.n_members == 2
    fe.fit(clips, waves, work_dir=tmp_path)
    assert fe.n_members == 2 and fe.class_names == ["fan|00|kind_0", "fan|00|kind_1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member_0", "member_1"]
    e = fe.transform(clips, waves, "embedding")
    assert e.shape == (8, 512)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        e[:, :256] * np.sqrt(2), embed(fe.members[0], waves, normalize=True), rtol=1e-5
    )
    assert fe.transform(clips[:2], waves[:2], "embedding") is not e  # memoised rows, same values
    np.testing.assert_array_equal(fe.transform(clips[:2], waves[:2], "embedding"), e[:2])
    assert fe.transform(clips, waves, "views").shape == (8, 3, 512)


def test_training_is_deterministic_and_supports_pad_and_noise():
    waves, labels = _toy_clips(n_per_class=3, n_classes=2, seconds=1.0, seed=5)
    noise = [np.random.default_rng(9).standard_normal(SR // 2).astype(np.float32)]
    cfg = DualCNNConfig(
        epochs=1,
        batch_size=6,
        n_subclusters=2,
        fit_mode="pad",
        supplemental_noise=True,
        noise_p=1.0,
    )
    _, h1 = train_dualcnn(waves, labels, 2, cfg, "cpu", noise_waves=noise)
    m2, h2 = train_dualcnn(waves, labels, 2, cfg, "cpu", noise_waves=noise)
    assert h1[0]["loss"] == h2[0]["loss"]
    assert m2.cfg.input_len == typical_length(waves, SR) and m2.cfg.fit_mode == "pad"
    # no noise clips found: train without (and say so) rather than fail a long pipeline
    plain = DualCNNConfig(epochs=1, batch_size=6, n_subclusters=2)
    _, h3 = train_dualcnn(
        waves,
        labels,
        2,
        DualCNNConfig(epochs=1, batch_size=6, n_subclusters=2, supplemental_noise=True),
        "cpu",
        noise_waves=[],
    )
    _, h4 = train_dualcnn(waves, labels, 2, plain, "cpu")
    assert h3[0]["loss"] == h4[0]["loss"] != h1[0]["loss"]
    with pytest.raises(ValueError):
        train_dualcnn(waves, labels + 5, 2, cfg, "cpu")


def test_auxiliary_classes_synthetic_and_shifts():
    from stethoscope.models.dualcnn import auxiliary

    waves, names = auxiliary.synthetic_clips({"fan", "valve"}, 2, 8000)
    machines = {n.split("|")[1] for n in names}
    assert len(waves) == 2 * len(machines) and not machines & {"fan", "valve"}
    assert all(w.shape == (8000,) and n.startswith("aux|") for w, n in zip(waves, names))
    clip = np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32)
    shifted, labels = auxiliary.shifted_clips([clip], ["fan|00|source"])
    assert labels == ["fan|00|source|x0.94", "fan|00|source|x1.06"]
    assert [len(s) for s in shifted] == [math.ceil(SR * 50 / 47), math.ceil(SR * 50 / 53)]
    # the tone moves by the speed factor
    peak = [np.argmax(np.abs(np.fft.rfft(s))) * SR / len(s) for s in shifted]
    np.testing.assert_allclose(peak, [440 * 0.94, 440 * 1.06], rtol=2e-3)


def test_frontend_adds_auxiliary_classes_after_the_datas_own(tmp_path, caplog):
    waves, _ = _toy_clips(n_per_class=4, n_classes=2, seconds=1.0)
    clips = _clips(len(waves))
    fe = DualCNNFrontEnd(
        {"epochs": 1, "batch_size": 8, "n_subclusters": 2, "auxiliary": "shifts"}, device="cpu"
    )
    fe.fit(clips, waves)
    assert "too few" not in caplog.text
    own = ["fan|00|kind_0", "fan|00|kind_1"]
    assert fe.class_names[:2] == own
    assert fe.class_names[2:] == sorted(f"{c}|x{f:g}" for c in own for f in (0.94, 1.06))
    assert fe.members[0].head.n_classes == 6
    x = fe.transform(clips, waves, "embedding-logits")
    assert x.shape == (len(waves), 256 + 2)  # back ends see the data's classes only


def test_without_auxiliary_classes_two_classes_are_flagged(caplog):
    waves, _ = _toy_clips(n_per_class=4, n_classes=2, seconds=1.0)
    fe = DualCNNFrontEnd({"epochs": 1, "batch_size": 8, "n_subclusters": 2}, device="cpu")
    fe.fit(_clips(len(waves)), waves)
    assert "form 2 class(es)" in caplog.text and "auxiliary: synthetic" in caplog.text


@pytest.mark.skipif(
    not torch._dynamo.is_dynamo_supported(), reason="torch.compile is not supported here"
)
def test_compiled_training_trains_like_eager():
    """The ``compile`` path: graph capture and compiled autograd through the shared loop. Backend
    aot_eager (no code generation): inductor's C++ build of this network takes minutes on a
    2-core CPU; benchmarks/bench_dualcnn_gpu.py times inductor."""
    waves, labels = _toy_clips(n_per_class=4, n_classes=2, seconds=1.0, seed=2)
    cfg = DualCNNConfig(epochs=1, batch_size=4, n_subclusters=2, seed=1)
    compiled = DualCNNConfig(**{**cfg.to_dict(), "compile": True, "compile_backend": "aot_eager"})
    assert compiled.fingerprint() == cfg.fingerprint()  # how it runs, not what it learns
    model, (h,) = train_dualcnn(waves, labels, 2, compiled, "cpu")
    _, (ref,) = train_dualcnn(waves, labels, 2, cfg, "cpu")
    assert math.isfinite(h["loss"]) and h["loss"] == pytest.approx(ref["loss"], rel=1e-4)
    assert type(model) is DualBranchCNN  # the module itself, saved as ever (not the compiled one)
