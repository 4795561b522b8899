"""The official AE baseline: network, training and resume, residuals, the saved front end, and the
MSE/Mahalanobis scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stethoscope.backends.ae_scores import AEMahalaBackend, AEMSEBackend, precision_matrix
from stethoscope.backends.base import BACKENDS, FitData
from stethoscope.data.clip import Clip
from stethoscope.errors import ConfigError, ModelError
from stethoscope.models import FRONTENDS
from stethoscope.models.ae import AEConfig, AEFrontEnd, DenseAE, reconstruction_residuals, train_ae
from stethoscope.state_io import load_state, save_state

DIM = 640


def manifold_clips(
    rng: np.random.Generator, lengths: list[int], rank: int = 4
) -> tuple[list[np.ndarray], np.ndarray]:
    """Clips whose frame vectors lie near a random rank-``rank`` subspace (offset and noise)."""
    basis = rng.normal(size=(rank, DIM)) / np.sqrt(rank)
    offset = rng.normal(size=DIM)
    clips = [
        (rng.normal(size=(n, rank)) @ basis + offset + 0.05 * rng.normal(size=(n, DIM))).astype(
            np.float32
        )
        for n in lengths
    ]
    return clips, offset


def small_cfg(**kw) -> AEConfig:
    return AEConfig(
        **{"epochs": 3, "batch_size": 32, "lr": 1e-3, "val_split": 0.1, "seed": 3, **kw}
    )


def clip(machine: str, i: int) -> Clip:
    return Clip(
        Path(f"/d/{machine}/train/{i}.wav"), machine, "00", "train", "source", "normal", f"{i:04d}"
    )


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Stop(Exception):
    pass


# ------------------------------------------------------------------ network


def test_dense_ae_architecture_and_shapes():
    model = DenseAE()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (640, 128),
        (128, 128),
        (128, 128),
        (128, 128),
        (128, 8),
        (8, 128),
        (128, 128),
        (128, 128),
        (128, 128),
        (128, 640),
    ]
    assert len(bns) == 9 and all(b.momentum == 0.01 and b.eps == 1e-3 for b in bns)
    assert isinstance(model.decoder[-1], torch.nn.Linear)  # no BN/ReLU after the output layer
    recon, z = model.eval()(torch.zeros(7, 640))
    assert recon.shape == (7, 640) and z.shape == (7, 8)
    small = DenseAE(input_dim=64 * 5)
    assert small.eval()(torch.zeros(2, 320))[0].shape == (2, 320)
    assert small.config()["input_dim"] == 320


# ------------------------------------------------------------------ training


def test_training_reduces_loss_and_reports_progress(rng):
    clips, _ = manifold_clips(rng, [200, 150, 250])  # 600 vectors: 60 held out
    seen = []
    model, hist = train_ae(
        clips, small_cfg(), "cpu", progress=lambda s, d, n, m: seen.append((s, d, n, m["epoch"]))
    )
    assert seen == [("ae: epochs", e, 3, e) for e in (1, 2, 3)]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    assert not model.training
    # the validation loss is the eval-mode MSE of the held-out 10 % of the vectors
    from stethoscope.models.ae.training import split

    _, val = split(600, 0.1, 3)
    assert len(val) == 60
    x = torch.from_numpy(np.concatenate(clips)[val])
    with torch.no_grad():
        mse = float(((model(x)[0] - x) ** 2).mean())
    assert hist[-1]["val_loss"] == pytest.approx(mse, rel=1e-5)


def test_training_is_deterministic_and_leaves_global_state(rng):
    clips, _ = manifold_clips(rng, [120, 80])
    torch.set_num_threads(2)
    torch.manual_seed(5)
    rng_state = torch.get_rng_state()
    try:
        a, h1 = train_ae(clips, small_cfg(epochs=2), "cpu")
        assert torch.get_num_threads() == 2 and torch.equal(torch.get_rng_state(), rng_state)
    finally:
        torch.set_num_threads(1)
    b, h2 = train_ae(clips, small_cfg(epochs=2), "cpu")  # one thread: the AE's default
    assert AEConfig().threads == 1
    assert [h["loss"] for h in h1] == [h["loss"] for h in h2] and same_weights(a, b)


def test_interrupted_run_resumes_bit_for_bit(rng, tmp_path):
    clips, _ = manifold_clips(rng, [150, 130])
    full, full_hist = train_ae(clips, small_cfg(epochs=4), "cpu", work_dir=tmp_path / "full")

    def stop_at_2(stage: str, done: float, total: int, m: dict) -> None:
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        train_ae(clips, small_cfg(epochs=4), "cpu", progress=stop_at_2, work_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["epoch"] == 2
    seen = []
    model, hist = train_ae(
        clips,
        small_cfg(epochs=4),
        "cpu",
        work_dir=tmp_path / "run",
        progress=lambda s, d, n, m: seen.append(d),
    )
    assert seen == [2, 3, 4]  # where it resumed, then the epochs it ran
    assert same_weights(model, full)
    assert [h["loss"] for h in hist] == [h["loss"] for h in full_hist]

    # other data or settings: refused, naming what differs
    with pytest.raises(ModelError, match="other data or settings .*data: "):
        train_ae(clips[:1], small_cfg(epochs=4), "cpu", work_dir=tmp_path / "run")
    with pytest.raises(ModelError, match="ae.batch_size: 32 then, 64 now"):
        train_ae(clips, small_cfg(epochs=4, batch_size=64), "cpu", work_dir=tmp_path / "run")


def test_residuals_shapes_and_values(rng):
    clips, _ = manifold_clips(rng, [30, 70, 10])
    model, _ = train_ae(clips, small_cfg(epochs=1), "cpu")
    res = reconstruction_residuals(model, clips, device="cpu", batch=50)
    assert [r.shape for r in res] == [(30, 640), (70, 640), (10, 640)]
    assert all(r.dtype == np.float32 for r in res)
    with torch.no_grad():
        direct = clips[1] - model.eval()(torch.from_numpy(clips[1]))[0].numpy()
    np.testing.assert_allclose(res[1], direct, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ the front end


def test_frontend_resumes_at_the_next_machine_type(rng, tmp_path, caplog):
    fan, _ = manifold_clips(rng, [60, 60])
    pump, _ = manifold_clips(rng, [50, 70])
    clips = [clip("fan", 0), clip("fan", 1), clip("pump", 2), clip("pump", 3)]
    inputs = fan + pump
    params = {"epochs": 3, "batch_size": 32}
    assert FRONTENDS.get("ae") is AEFrontEnd and AEFrontEnd.name == "ae"
    full = AEFrontEnd(params, device="cpu")
    full.fit(clips, inputs, work_dir=tmp_path / "full")

    def stop_in_pump(stage: str, done: float, total: int, m: dict) -> None:
        if stage == "ae pump: epochs" and done == 1:
            raise Stop

    with pytest.raises(Stop):
        AEFrontEnd(params, device="cpu").fit(clips, inputs, stop_in_pump, tmp_path / "run")
    again = AEFrontEnd(params, device="cpu")
    with caplog.at_level("INFO", logger="stethoscope.models.training"):
        again.fit(clips, inputs, work_dir=tmp_path / "run")
    assert f"ae fan: already trained (3 epochs) in {tmp_path / 'run' / 'fan'}" in caplog.text
    assert f"ae pump: resuming at epoch 2 of 3 from {tmp_path / 'run' / 'pump'}" in caplog.text
    for machine in ("fan", "pump"):
        assert same_weights(again.models[machine], full.models[machine])
    res = again.transform(clips, inputs, "residual")
    assert [r.shape for r in res] == [(60, 640), (60, 640), (50, 640), (70, 640)]
    np.testing.assert_array_equal(res[2], reconstruction_residuals(full.models["pump"], pump)[0])
    with pytest.raises(ConfigError, match="residuals"):
        again.transform(clips, inputs, "embedding")
    with pytest.raises(ConfigError, match="unknown AEConfig setting"):
        AEFrontEnd({"epoch": 3})


def test_saved_frontend_round_trip_and_checks(rng, tmp_path):
    fan, _ = manifold_clips(rng, [40, 40])
    clips = [clip("fan", 0), clip("fan", 1)]
    fe = AEFrontEnd({"epochs": 1, "batch_size": 32}, device="cpu")
    fe.fit(clips, fan)
    fe.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "frontend.json").read_text())
    assert {k: meta[k] for k in ("format", "version", "frontend")} == {
        "format": "stethoscope.frontend",
        "version": 1,
        "frontend": "ae",
    }
    assert meta["config"]["epochs"] == 1 and meta["networks"]["fan"]["input_dim"] == 640
    torch.manual_seed(0)
    rng_state = torch.get_rng_state()
    loaded = AEFrontEnd.load(tmp_path / "m", device="cpu")
    assert torch.equal(torch.get_rng_state(), rng_state)  # loading draws no random numbers
    assert same_weights(loaded.models["fan"], fe.models["fan"])
    for a, b in zip(
        loaded.transform(clips, fan, "residual"), fe.transform(clips, fan, "residual"), strict=True
    ):
        np.testing.assert_array_equal(a, b)

    def tampered(**changes) -> Path:
        out = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        out.mkdir()
        weights = (tmp_path / "m" / "frontend.safetensors").read_bytes()
        (out / "frontend.safetensors").write_bytes(weights)
        (out / "frontend.json").write_text(json.dumps({**meta, **changes}))
        return out

    for changes, message in [
        ({"format": "other"}, "not a stethoscope front end"),
        ({"version": 2}, "format version 2; this stethoscope reads version 1"),
        ({"frontend": "dualcnn"}, "holds a 'dualcnn' front end, not 'ae'"),
        ({"config": {**meta["config"], "batch": 3}}, "unknown AEConfig setting"),
        # a network of 10^10 weights would need 40 GB: refused from the shapes, nothing allocated
        (
            {"networks": {"fan": {**meta["networks"]["fan"], "hidden_dim": 10**7}}},
            r"'fan/encoder.0.weight' is F32\[128, 640\], the network described in frontend.json "
            r"needs F32\[10000000, 640\]",
        ),
        ({"networks": {"fan": {"input_dim": "x"}}}, "does not describe a network"),
        ({"networks": {"pump": meta["networks"]["fan"]}}, "tensors of 'pump' do not fit"),
    ]:
        path = tampered(**changes)
        with pytest.raises(ModelError, match=message) as err:
            AEFrontEnd.load(path, device="cpu")
        assert str(path) in str(err.value)
    with pytest.raises(ModelError, match="missing"):
        AEFrontEnd.load(tmp_path / "nowhere")


# ------------------------------------------------------------------ MSE score


def test_mse_score_is_higher_off_the_training_manifold(rng):
    clips, offset = manifold_clips(rng, [300, 300, 300])
    model, _ = train_ae(clips, small_cfg(epochs=8, val_split=0.0), "cpu")
    far = [(offset + 3.0 * rng.normal(size=(100, DIM))).astype(np.float32) for _ in range(3)]
    train_res = reconstruction_residuals(model, clips, "cpu")
    backend = AEMSEBackend().fit(FitData(x=train_res, domains=np.array(["source"] * 3)))
    s_train = backend.score(reconstruction_residuals(model, clips, "cpu"))
    s_far = backend.score(reconstruction_residuals(model, far, "cpu"))
    assert s_far.min() > 2 * s_train.max()


def test_mse_score_definition_and_state():
    r = [np.arange(10, dtype=np.float32).reshape(2, 5), np.ones((3, 5), np.float32)]
    backend = AEMSEBackend().fit(FitData(x=r, domains=np.array(["source", "target"])))
    np.testing.assert_allclose(backend.score(r), [np.mean(np.arange(10.0) ** 2), 1.0])
    arrays, meta = backend.get_state()
    assert np.array_equal(AEMSEBackend.from_state(arrays, meta).score(r), backend.score(r))
    assert BACKENDS.get("ae-mse") is AEMSEBackend and BACKENDS.get("ae-mahala") is AEMahalaBackend


# ------------------------------------------------------------------ Mahalanobis score


def residual_clips(
    rng, n_clips: int, n_vec: int, scale: float, mean: float = 0.0
) -> list[np.ndarray]:
    return [
        (mean + scale * rng.normal(size=(n_vec, DIM))).astype(np.float32) for _ in range(n_clips)
    ]


def test_identity_covariance_reduces_to_euclidean(rng):
    clips = residual_clips(rng, 3, 20, 1.0, mean=0.3)
    eye = AEMahalaBackend.from_covariances(np.eye(128), ridge=0.0)
    blocks = [c.reshape(-1, 128).astype(np.float64) for c in clips]
    # official reduction: squared norm of the clip's mean 128-dim residual block
    np.testing.assert_allclose(
        eye.score(clips), [np.sum(b.mean(0) ** 2) for b in blocks], rtol=1e-10
    )
    # which is what averaging the official (5T x 5T) matrix delta @ P @ delta.T gives
    np.testing.assert_allclose(eye.score(clips)[0], np.mean(blocks[0] @ blocks[0].T), rtol=1e-10)
    per_block = AEMahalaBackend.from_covariances(np.eye(128), ridge=0.0, reduction="mean_distance")
    np.testing.assert_allclose(
        per_block.score(clips), [np.mean(np.sum(b**2, 1)) for b in blocks], rtol=1e-10
    )
    full = AEMahalaBackend.from_covariances(np.eye(DIM), ridge=0.0)
    np.testing.assert_allclose(
        full.score(clips), [np.sum(c.astype(np.float64).mean(0) ** 2) for c in clips], rtol=1e-10
    )


def test_target_falls_back_to_source(rng):
    clips = residual_clips(rng, 4, 60, 1.0)
    be = AEMahalaBackend().fit(FitData(x=clips, domains=np.array(["source"] * 4)))
    assert be.info["target_fallback"] and be.info["n_target_blocks"] == 0
    assert np.array_equal(be.cov["source"], be.cov["target"])
    ds = be.domain_scores(clips)
    assert np.array_equal(ds[:, 0], ds[:, 1])


def anisotropic_clips(rng, n_clips: int, n_vec: int, loud_first_half: bool) -> list[np.ndarray]:
    """Residuals whose blocks vary mostly in the first (or the second) 64 mel bins."""
    scale = np.r_[np.full(64, 3.0), np.full(64, 0.3)]
    scale = np.tile(scale if loud_first_half else scale[::-1], 5)
    return [(scale * rng.normal(size=(n_vec, DIM))).astype(np.float32) for _ in range(n_clips)]


def test_min_over_source_and_target(rng):
    src = anisotropic_clips(rng, 6, 100, True)
    tgt = anisotropic_clips(rng, 3, 100, False)
    domains = np.array(["source"] * 6 + ["target"] * 3)
    be = AEMahalaBackend().fit(FitData(x=src + tgt, domains=domains))
    assert be.info["target_weight"] == 1.0 and not be.info["target_fallback"]
    test = anisotropic_clips(rng, 2, 100, True) + anisotropic_clips(rng, 2, 100, False)
    ds = be.domain_scores(test)
    assert np.array_equal(be.score(test), ds.min(axis=1))
    assert (ds[:2, 0] < ds[:2, 1] / 10).all()  # source-like clips: closest to the source covariance
    assert (ds[2:, 1] < ds[2:, 0] / 10).all()  # target-like clips to the target one
    # without the target covariance, target-like clips would look anomalous
    src_only = AEMahalaBackend().fit(FitData(x=src, domains=np.array(["source"] * 6)))
    assert src_only.score(test[2:]).min() > 10 * be.score(test[2:]).max()


def test_official_covariance_scale_and_clean_variant(rng):
    clips = residual_clips(rng, 3, 50, 1.0, mean=0.5)
    dom = np.array(["source"] * 3)
    official = AEMahalaBackend(batch_size=10_000).fit(FitData(x=clips, domains=dom))
    clean = AEMahalaBackend(variant="clean").fit(FitData(x=clips, domains=dom))
    n_vec, n_blk = 150, 750
    # one batch holding everything: the official sum / (vectors - 1) is (blocks - 1)/(vectors - 1)
    # ~ 5x
    np.testing.assert_allclose(
        official.cov["source"] * (n_vec - 1) / (n_blk - 1), clean.cov["source"], rtol=1e-10
    )
    direct = np.cov(np.concatenate(clips).reshape(-1, 128).astype(np.float64), rowvar=False)
    np.testing.assert_allclose(clean.cov["source"], direct, rtol=1e-8, atol=1e-12)


def official_batch_covariances(clips, domains, seed, batch_size=256):
    """The official covariance pass written as its loop: shuffled batches of vectors, each domain's
    128-dim blocks centred on their mean within the batch, diff.T @ diff summed, / (vectors - 1)."""
    vectors = np.concatenate(clips).astype(np.float64)
    vdom = np.repeat(domains, [len(c) for c in clips])
    order = np.random.default_rng(seed).permutation(len(vectors))
    out = {}
    for dom in ("source", "target"):
        total, count = np.zeros((128, 128)), 0
        for s in range(0, len(order), batch_size):
            batch = order[s : s + batch_size]
            if len(batch) < 2:  # the official loop skips single-vector batches
                continue
            rows = batch[vdom[batch] == dom]
            if len(rows) == 0:
                continue
            blocks = vectors[rows].reshape(-1, 128)
            diff = blocks - blocks.mean(axis=0)
            total += diff.T @ diff
            count += len(rows)
        if count:
            out[dom] = total / (count - 1)
    return out


def test_official_per_batch_covariance_is_computed_exactly(rng):
    clips = residual_clips(rng, 5, 130, 1.0, mean=0.4) + residual_clips(rng, 2, 61, 2.0)
    dom = np.array(["source"] * 5 + ["target"] * 2)
    for seed in (0, 3):
        be = AEMahalaBackend(min_target_blocks=0).fit(FitData(x=clips, domains=dom, seed=seed))
        want = official_batch_covariances(clips, dom, seed)
        for d in ("source", "target"):
            np.testing.assert_allclose(be.cov[d], want[d], rtol=1e-10, atol=1e-12)


def test_few_target_vectors_shrink_towards_source(rng):
    src = residual_clips(rng, 4, 100, 1.0)
    tgt = residual_clips(rng, 1, 20, 3.0)  # 100 blocks < 128 dims: singular on its own
    domains = np.array(["source"] * 4 + ["target"])
    be = AEMahalaBackend(variant="clean").fit(FitData(x=src + tgt, domains=domains))
    w = be.info["target_weight"]
    assert w == pytest.approx(100 / 1280)
    only_t = np.cov(tgt[0].reshape(-1, 128).astype(np.float64), rowvar=False)
    np.testing.assert_allclose(
        be.cov["target"], w * only_t + (1 - w) * be.cov["source"], rtol=1e-8, atol=1e-12
    )
    # the blended covariance is full rank, and a clip's score is m' P m of its mean residual block
    p = precision_matrix(be.cov["target"])
    m = tgt[0].reshape(-1, 128).astype(np.float64).mean(axis=0)
    assert be.domain_scores(tgt)[0, 1] == pytest.approx(m @ p @ m, rel=1e-9)


def test_precision_matrix_handles_singular_covariance():
    cov = np.diag([1.0, 2.0, 0.0])
    p = precision_matrix(cov, ridge=0.0)  # Cholesky fails -> pseudo-inverse
    np.testing.assert_allclose(p, np.diag([1.0, 0.5, 0.0]), atol=1e-12)
    # with the default ridge: the exact inverse of cov + 1e-6 * mean(diag) * I
    ridge = 1e-6 * np.trace(cov) / 3
    np.testing.assert_allclose(
        precision_matrix(cov), np.linalg.inv(cov + ridge * np.eye(3)), rtol=1e-9
    )


def test_mahala_state_round_trip_gives_identical_scores(rng, tmp_path):
    src = residual_clips(rng, 3, 80, 1.0)
    tgt = residual_clips(rng, 2, 80, 2.0)
    be = AEMahalaBackend(reduction="mean_distance").fit(
        FitData(x=src + tgt, domains=np.array(["source"] * 3 + ["target"] * 2), seed=7)
    )
    arrays, meta = be.get_state()
    save_state(tmp_path, "backend", arrays, meta)
    loaded = AEMahalaBackend.from_state(*load_state(tmp_path, "backend"))
    test = residual_clips(rng, 4, 30, 1.5)
    assert np.array_equal(loaded.score(test), be.score(test))
    assert loaded.reduction == "mean_distance" and loaded.info == be.info


def test_bad_inputs_are_refused(rng):
    with pytest.raises(ValueError, match="multiple of block_size"):
        AEMahalaBackend(block_size=100).fit(
            FitData(x=residual_clips(rng, 1, 5, 1.0), domains=np.array(["source"]))
        )
    with pytest.raises(ValueError, match="non-empty"):
        AEMSEBackend().score([np.zeros((0, DIM))])
    with pytest.raises(RuntimeError, match="not fitted"):
        AEMahalaBackend().score(residual_clips(rng, 1, 5, 1.0))
