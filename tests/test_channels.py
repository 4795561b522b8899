"""Two-channel (near/far) recordings: each channel setting reads what it says, the DCASE2026 layout
is catalogued, and a model trained on one channel refuses another unless told."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from stethoscope.audio import AudioError, read_audio
from stethoscope.cli import main
from stethoscope.data import Catalog
from stethoscope.data.channels import frontend_channel, resolve_channel
from stethoscope.dsp.noise_cancel import cancel
from stethoscope.errors import ConfigError
from stethoscope.features import LogMel, extract

SR = 16000


def _stereo(path: Path, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(SR * seconds)
    t = np.arange(n) / SR
    near = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(n)
    far = 0.05 * np.sin(2 * np.pi * 440 * t) + 0.2 * rng.standard_normal(n)
    data = np.stack([near, far], axis=1).astype(np.float32)
    sf.write(str(path), data, SR, subtype="PCM_16")
    return sf.read(str(path), dtype="float32")[0]  # what PCM_16 holds


def test_each_channel_setting_reads_exactly_that(tmp_path):
    path = tmp_path / "two.wav"
    ref = _stereo(path)
    np.testing.assert_array_equal(read_audio(path, channel="near").samples, ref[:, 0])
    np.testing.assert_array_equal(read_audio(path, channel="far").samples, ref[:, 1])
    np.testing.assert_array_equal(read_audio(path, channel="both").samples, ref.T)
    np.testing.assert_allclose(read_audio(path, channel="mix").samples, ref.mean(axis=1), atol=1e-7)
    assert read_audio(path, channel="near").notes == ["2 channels: channel 0 (near) used"]
    assert read_audio(path, channel="mix").notes == ["2 channels mixed down to mono"]
    anc = read_audio(path, channel="near-anc")
    np.testing.assert_array_equal(anc.samples, cancel(ref[:, 0], ref[:, 1]))
    assert anc.notes == ["2 channels: channel 0 (near), channel 1 (far) cancelled from it"]
    mono = tmp_path / "mono.wav"
    sf.write(str(mono), ref[:, 0], SR, subtype="PCM_16")
    np.testing.assert_array_equal(read_audio(mono, channel="far").samples, ref[:, 0])
    for channel in ("both", "near-anc"):
        with pytest.raises(AudioError, match="mono.wav: 1 channel: two"):
            read_audio(mono, channel=channel)


def test_features_and_cache_are_keyed_by_the_channel(tmp_path):
    path = tmp_path / "two.wav"
    _stereo(path)
    near, far, both = (LogMel(channel=c) for c in ("near", "far", "both"))
    assert len({near.key(), far.key(), both.key(), LogMel(channel="near-anc").key()}) == 4
    cache = tmp_path / "cache"
    x_near = extract([path], near, cache=cache).features[0]
    x_far = extract([path], far, cache=cache).features[0]
    x_both = extract([path], both, cache=cache).features[0]
    assert x_near.shape[1] == 640 and x_both.shape[1] == 1280
    # a frame of "both" is the near frame's 128 bands followed by the far frame's
    np.testing.assert_allclose(x_both[:, :128], x_near[:, :128], atol=1e-4)
    np.testing.assert_allclose(x_both[:, 128:256], x_far[:, :128], atol=1e-4)
    again = extract([path], both, cache=cache)
    assert again.n_cached == 1 and np.array_equal(again.features[0], x_both)


def test_the_channel_of_a_study():
    assert frontend_channel("near", {}) == "near"
    assert frontend_channel("both", {}) == "near"
    assert frontend_channel("near", {"two_channel": True}) == "both"
    assert frontend_channel("mix", {"noise_cancel": True}) == "near-anc"
    with pytest.raises(ConfigError, match="noise_cancel reads the near channel alone"):
        frontend_channel("near", {"two_channel": True, "noise_cancel": True})
    assert resolve_channel("far", []) == "far"


def _dcase2026_fixture(root: Path) -> Path:
    """Two-channel clips of a DCASE2026 dev machine type in the official layout."""
    raw = root / "dcase2026t2" / "dev_data" / "raw" / "ToyCarEmu"
    names = {
        "train": [f"section_00_source_train_normal_{i:04d}_car_A1_spd_28V.wav" for i in range(6)]
        + ["section_00_target_train_normal_0000_car_B2_spd_31V.wav"],
        "test": ["section_00_source_test_normal_0000_car_A1_spd_28V.wav",
                 "section_00_source_test_anomaly_0000_car_A1_spd_28V.wav",
                 "section_00_target_test_normal_0000_car_B2_spd_31V.wav",
                 "section_00_target_test_anomaly_0000_car_B2_spd_31V.wav"],
    }  # fmt: skip
    for split, files in names.items():
        (raw / split).mkdir(parents=True)
        for i, name in enumerate(files):
            _stereo(raw / split / name, seed=i + (100 if "anomaly" in name else 0))
    eval_raw = root / "dcase2026t2" / "eval_data" / "raw" / "Sander" / "test"
    eval_raw.mkdir(parents=True)
    _stereo(eval_raw / "section_00_0000.wav")
    return root / "dcase2026t2"


def test_dcase2026_layout_and_names_are_catalogued(tmp_path):
    root = _dcase2026_fixture(tmp_path)
    cat = Catalog.scan(root)
    assert cat.machines() == ["Sander", "ToyCarEmu"] and not cat.issues
    train = cat.select(machine="ToyCarEmu", split="train", domain="target")
    assert len(train) == 1 and train[0].attributes == (("car", "B2"), ("spd", "31V"))
    anomaly = [c for c in cat.select(split="test") if c.label == "anomaly"]
    assert {(c.machine, c.section, c.domain) for c in anomaly} == {
        ("ToyCarEmu", "00", "source"),
        ("ToyCarEmu", "00", "target"),
    }
    hidden = cat.select(machine="Sander")
    assert len(hidden) == 1 and hidden[0].dataset == "eval" and hidden[0].label is None
    assert resolve_channel("auto", cat.select(split="train")) == "near"


def test_a_model_trained_on_near_refuses_far_unless_told(tmp_path):
    root = _dcase2026_fixture(tmp_path)
    model = tmp_path / "model"
    args = ["--data", str(root), "--cache-dir", str(tmp_path / "cache"), "--machines", "ToyCarEmu"]
    res = CliRunner().invoke(main, ["fit", "--system", "ae-mse", "--out", str(model), "--epochs",
                                    "1", *args])  # fmt: skip
    assert res.exit_code == 0, res.output
    info = json.loads((model / "system.json").read_text())["info"]["trained_on"]
    assert info["channel"] == "near" and info["data"]["settings"] == {"channel": "near"}
    scores = tmp_path / "scores"
    res = CliRunner().invoke(
        main, ["score", "--model", str(model), "--out", str(scores), "--channel", "far", *args]
    )
    assert res.exit_code == 1 and "trained on the near channel, not far" in res.output
    assert not scores.exists()
    res = CliRunner().invoke(main, ["score", "--model", str(model), "--out", str(scores),
                                    "--channel", "far", "--force-channel", *args])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["score", "--model", str(model), "--out", str(tmp_path / "s2"),
                                    *args])  # fmt: skip
    assert res.exit_code == 0
    far = (scores / "anomaly_score_ToyCarEmu_section_00_test.csv").read_text()
    near = (tmp_path / "s2" / "anomaly_score_ToyCarEmu_section_00_test.csv").read_text()
    assert far != near  # another channel, other scores


def test_noise_aware_ae_systems_read_what_they_say(tmp_path):
    root = _dcase2026_fixture(tmp_path)
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "--systems", "ae-mse-noiseref,ae-mse-2ch,ae-mse-anc",
                                    "--data",
                                    str(root), "--out", str(run), "--epochs", "1", "--machines",
                                    "ToyCarEmu", "--cache-dir", str(tmp_path / "c")])  # fmt: skip
    assert res.exit_code == 0, res.output
    for name, dim in (("ae-mse-noiseref", 640), ("ae-mse-2ch", 1280)):
        meta = json.loads((run / name / "model" / "system.json").read_text())
        assert meta["info"]["trained_on"]["channel"] == "both"
        fe = json.loads((run / name / "model" / "frontend" / "frontend.json").read_text())
        assert fe["networks"]["ToyCarEmu"]["input_dim"] == dim
    meta = json.loads((run / "ae-mse-anc" / "model" / "system.json").read_text())
    assert meta["info"]["trained_on"]["channel"] == "near-anc"
    gains = json.loads((run / "ae-mse-noiseref" / "model" / "frontend" / "frontend.json")
                       .read_text())["gains"]["ToyCarEmu"]  # fmt: skip
    assert len(gains) == 128 and min(gains) >= 0.0


def test_noise_reference_gain_is_the_leak_of_far_noise_into_near():
    from stethoscope.features.logmel import LogMelConfig
    from stethoscope.models.ae.noise_reference import SPECTRAL_FLOOR, denoise, fit_gains

    rng = np.random.default_rng(1)
    two = LogMel(LogMelConfig(channel="both"))
    leak = np.linspace(0.05, 0.3, 128)  # near = machine + leak * far, per band, in power
    clips = []
    for _ in range(4):
        far = rng.gamma(2.0, 1.0, size=(40, 128))  # fluctuating noise power
        machine = 2.0 + 0.05 * rng.standard_normal((40, 128))  # steady machine power
        near = machine + leak * far
        rows = np.concatenate([10 * np.log10(near), 10 * np.log10(far)], axis=1)
        clips.append(np.array(two.stack(rows.astype(np.float32))))
    np.testing.assert_allclose(fit_gains(clips), leak, rtol=0.05, atol=0.01)
    cleaned = denoise(clips[0], leak)
    assert cleaned.shape == (36, 640)
    # what is left is the machine (or the floor), in dB
    rows = LogMel(LogMelConfig(channel="near")).to_storage(cleaned)
    near0 = 10 ** (two.to_storage(clips[0])[:, :128] / 10)
    machine0 = near0 - leak * 10 ** (two.to_storage(clips[0])[:, 128:] / 10)
    want = 10 * np.log10(np.maximum(machine0, SPECTRAL_FLOOR * near0))
    np.testing.assert_allclose(rows, want, atol=1e-3)


def test_per_file_notes_are_counted_in_the_summary():
    from stethoscope.pipeline.study import group_notes

    notes = [
        f"/d/fan/train/section_00_{i:04d}.wav: 2 channels: channel 0 (near) used" for i in range(3)
    ]
    notes += ["/d/fan/test/x.wav: silent (peak below -80 dBFS)", "fan: no target-domain clips"]
    assert group_notes(notes) == [
        "3 files: 2 channels: channel 0 (near) used (e.g. /d/fan/train/section_00_0000.wav)",
        "/d/fan/test/x.wav: silent (peak below -80 dBFS)",
        "fan: no target-domain clips",
    ]
