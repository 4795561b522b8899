"""Synthetic data generator: layout, naming, attributes, determinism, faults and difficulty."""

from __future__ import annotations

import copy
import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from stethoscope.audio import audio_info, load_audio
from stethoscope.cli import main
from stethoscope.data import Catalog
from stethoscope.synth import (
    DEFAULT_MACHINES,
    MACHINES,
    NEAR_FAR_DURATIONS,
    NEAR_FAR_NOISE_DB,
    anomalies,
    clip_counts,
    clip_durations,
    generate_dataset,
)
from stethoscope.synth.check import evaluate_dataset, quick_check
from stethoscope.synth.generator import near_far_parts, plan_machine, synthesise

SCALE, DURATION = 0.02, 2.0


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    summary = generate_dataset(out, seed=0, scale=SCALE, duration=DURATION, workers=1)
    assert summary["clips"] == sum(m["clips"] for m in summary["machines"].values())
    return out


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _files(root: Path, machine: str) -> dict[str, str]:
    mdir = root / "dev_data" / "raw" / machine
    return {str(p.relative_to(mdir)): _md5(p) for p in sorted(mdir.rglob("*.wav"))}


def test_counts_scale_and_floors():
    assert clip_counts(1.0) == {
        "train_source": 990,
        "train_target": 10,
        "test": 50,
        "supplemental": 100,
    }
    assert clip_counts(0.001) == {
        "train_source": 10,
        "train_target": 2,
        "test": 3,
        "supplemental": 2,
    }
    for bad in (0.0, -1.0, 11.0):
        with pytest.raises(ValueError, match="scale"):
            clip_counts(bad)


def test_layout_read_back_by_catalog(small):
    cat = Catalog.scan(small)
    assert not cat.issues and not cat.notices
    assert cat.machines() == sorted(DEFAULT_MACHINES)
    want = clip_counts(SCALE)
    counts = cat.counts()
    for m in DEFAULT_MACHINES:
        assert counts[(m, "train", "source", "normal")] == want["train_source"]
        assert counts[(m, "train", "target", "normal")] == want["train_target"]
        for d in ("source", "target"):
            for lab in ("normal", "anomaly"):
                assert counts[(m, "test", d, lab)] == want["test"]
        clean = counts[(m, "supplemental", "source", "clean")]
        noise = counts[(m, "supplemental", "source", "noise")]
        assert clean >= 1 and noise >= 1 and clean + noise == want["supplemental"]
    frames, sr, channels = audio_info(cat.clips[0].path)
    assert (frames, sr, channels) == (int(DURATION * 16000), 16000, 1)


def test_audio_is_sane(small):
    cat = Catalog.scan(small)
    for c in cat.clips[::17]:
        y = load_audio(c.path)
        assert 1e-3 < float(np.sqrt(np.mean(y**2))) < 0.3, c.name
        assert float(np.max(np.abs(y))) <= 0.951, c.name


def test_hidden_attributes_and_domain_shift(small):
    cat = Catalog.scan(small)
    hidden = [m for m in DEFAULT_MACHINES if MACHINES[m].hidden]
    assert len(hidden) >= 2
    for m in DEFAULT_MACHINES:
        clips = cat.select(machine=m, split="train") + cat.select(machine=m, split="test")
        if m in hidden:
            assert {c.attribute_string for c in clips} == {"noAttribute"}
        else:
            assert all(c.has_attributes for c in clips)
            src = {c.attribute_string for c in clips if c.domain == "source"}
            tgt = {c.attribute_string for c in clips if c.domain == "target"}
            assert src and tgt and not src & tgt, m  # target runs in other conditions
        # hidden or not, the physical conditions differ between domains
        mt = MACHINES[m]
        assert not set(mt.source) & set(mt.target)


def test_attribute_csv_lists_train_and_test(small):
    cat = Catalog.scan(small)
    for m in DEFAULT_MACHINES:
        path = small / "dev_data" / "raw" / m / "attributes_00.csv"
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0][0] == "file_name" and rows[0][1:3] == ["d1p", "d1v"]
        listed = {r[0] for r in rows[1:]}
        expected = {
            f"{m}/{c.split}/{c.name}" for c in cat.select(machine=m) if c.split in ("train", "test")
        }
        assert listed == expected
        for r in rows[1:]:
            assert len(r) == len(rows[0])
            name = Path(r[0]).name
            clip = next(c for c in cat.select(machine=m) if c.name == name)
            if MACHINES[m].hidden:
                assert r[1:] == ["", ""]
            else:
                assert tuple(zip(r[1::2], r[2::2])) == clip.attributes
                assert cat.attribute_tables[m][name] == dict(clip.attributes)


def test_deterministic_and_independent_of_workers_and_subset(small, tmp_path):
    # two machines only, with a process pool: every clip must match the single-process full run
    generate_dataset(
        tmp_path / "again",
        seed=0,
        scale=SCALE,
        duration=DURATION,
        machines=["valve", "fan"],
        workers=2,
    )
    for m in ("valve", "fan"):
        assert _files(tmp_path / "again", m) == _files(small, m)
    generate_dataset(
        tmp_path / "other", seed=1, scale=SCALE, duration=DURATION, machines=["valve"], workers=1
    )
    a, b = _files(small, "valve"), _files(tmp_path / "other", "valve")
    assert len(a) == len(b) and not set(a.values()) & set(b.values())


def test_refuses_to_overwrite(small, tmp_path):
    with pytest.raises(FileExistsError, match="dev_data"):
        generate_dataset(small, scale=SCALE, duration=DURATION, machines=["fan"])
    out = tmp_path / "ds"
    generate_dataset(out, scale=0.01, duration=1.0, machines=["fan"], workers=1)
    stray = (
        out / "dev_data" / "raw" / "fan" / "train" / ("section_00_source_train_normal_9999_x_1.wav")
    )
    stray.write_bytes(b"")
    calls = []
    summary = generate_dataset(
        out,
        scale=0.01,
        duration=1.0,
        machines=["fan"],
        workers=1,
        overwrite=True,
        progress=lambda stage, d, t, info: calls.append((stage, d, t)),
    )
    assert not stray.exists()  # the machine folder was regenerated, not merged
    n = summary["clips"]
    assert calls[-1] == ("synthesising clips", n, n) and len(calls) == n


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown machine"):
        generate_dataset(tmp_path / "x", machines=["dishwasher"])
    with pytest.raises(ValueError, match="duration"):
        generate_dataset(tmp_path / "y", duration=0.1)
    with pytest.raises(ValueError, match="seed"):
        generate_dataset(tmp_path / "z", seed=-1)
    assert not any(tmp_path.iterdir())  # nothing written before the arguments were checked


@pytest.mark.parametrize("machine", DEFAULT_MACHINES)
def test_every_fault_changes_its_machine(machine):
    mt = MACHINES[machine]
    rng = np.random.default_rng(0)
    recipe = mt.build(mt.sample_attributes(rng, "source"), rng)
    assert len(mt.anomalies) >= 3
    for kind, offset in mt.anomalies.items():
        before = copy.deepcopy(recipe)
        faulty = anomalies.apply(kind, recipe, np.random.default_rng(1), 0.5, offset)
        assert repr(faulty) != repr(recipe), f"{kind} does nothing to {machine}"
        assert repr(recipe) == repr(before), "apply must not edit the normal recipe"


def test_detector_check_runs_on_written_data(small):
    res = evaluate_dataset(small, machines=["fan", "slider"])
    assert set(res) == {"domain", "all"}
    for table in res.values():
        assert set(table) == {"fan", "slider"}
        assert all(0.0 <= v <= 1.0 for r in table.values() for v in r.values())


def test_simple_detector_beats_chance_but_is_not_perfect():
    # 30 normals and 30 faults per domain; with the faults disabled "within" stays near 0.5
    res = quick_check(["fan", "gearbox", "valve"], seed=3, duration=3.0, n_train=40, n_test=30)
    within = float(np.mean([r["auc_within"] for r in res.values()]))
    auc_s = float(np.mean([r["auc_s"] for r in res.values()]))
    assert 0.6 < within < 0.95, res
    assert 0.6 < auc_s < 0.97, res


def test_target_train_count_is_fixed_whatever_the_scale(tmp_path):
    from stethoscope.data import Catalog
    from stethoscope.synth import generate_dataset

    generate_dataset(
        tmp_path, seed=1, scale=0.02, duration=1.0, machines=["valve"], workers=1, target_train=5
    )
    cat = Catalog.scan(tmp_path)
    assert len(cat.select(split="train", domain="target")) == 5
    assert len(cat.select(split="train", domain="source")) == 20


# ------------------------------------------------------------------ two channels (near / far)
NF_MACHINES = ["fan", "valve"]
NF_SCALE, NF_DURATION = 0.01, 1.0


@pytest.fixture(scope="module")
def near_far(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_nf") / "ds"
    summary = generate_dataset(
        out,
        seed=0,
        scale=NF_SCALE,
        duration=NF_DURATION,
        machines=NF_MACHINES,
        workers=1,
        channels="near-far",
    )
    assert summary["channels"] == "near-far" and summary["noise_db"] == NEAR_FAR_NOISE_DB
    return out


def _nf_jobs(machine: str, **kw) -> list:
    return plan_machine(
        Path("."), MACHINES[machine], 0, NF_SCALE, NF_DURATION, channels="near-far", **kw
    )


def _db(x: np.ndarray) -> float:
    return float(10.0 * np.log10(np.mean(np.square(x, dtype=np.float64))))


def test_near_far_files_are_two_channel_with_the_mono_names(near_far):
    cat = Catalog.scan(near_far)
    assert not cat.issues and not cat.notices
    for m in NF_MACHINES:
        mdir = near_far / "dev_data" / "raw" / m
        written = {f"{m}/{p.parent.name}/{p.name}" for p in mdir.rglob("*.wav")}
        # same names, counts, attributes and layout as the mono plan of the same arguments
        mono = plan_machine(near_far, MACHINES[m], 0, NF_SCALE, NF_DURATION)
        assert written == {j.relative for j in mono}
        for p in mdir.rglob("*.wav"):
            info = sf.info(str(p))
            assert (info.channels, info.samplerate, info.subtype, info.format) == (
                2,
                16000,
                "PCM_16",
                "WAV",
            )
            assert info.frames == int(NF_DURATION * 16000)
        y, _ = sf.read(str(next(mdir.glob("test/*.wav"))), dtype="float32")
        assert y.shape == (int(NF_DURATION * 16000), 2) and 0.0 < np.abs(y).max() <= 0.951


def test_near_far_is_deterministic_and_noise_db_changes_the_noisy_clips(near_far, tmp_path):
    again = tmp_path / "again"
    generate_dataset(
        again,
        seed=0,
        scale=NF_SCALE,
        duration=NF_DURATION,
        machines=["valve"],
        workers=2,
        channels="near-far",
    )
    assert _files(again, "valve") == _files(near_far, "valve")
    quieter = tmp_path / "quieter"
    generate_dataset(
        quieter,
        seed=0,
        scale=NF_SCALE,
        duration=NF_DURATION,
        machines=["valve"],
        workers=1,
        channels="near-far",
        noise_db=-10.0,
    )
    a, b = _files(quieter, "valve"), _files(near_far, "valve")
    assert a.keys() == b.keys()
    for name in a:  # the noise level changes every clip but the clean ones, which have no noise
        assert (a[name] == b[name]) == ("_clean_" in name), name


def test_near_far_manifest_records_noise_and_microphones(near_far):
    with (near_far / "synth_manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"channels", "near_snr_db", "far_snr_db", "mic_machine_far_db", "env_level_db"} <= set(
        rows[0]
    )
    scored = [r for r in rows if r["split"] != "supplemental"]
    assert all(r["channels"] == "near-far" for r in rows)
    near = np.array([float(r["near_snr_db"]) for r in scored])
    far = np.array([float(r["far_snr_db"]) for r in scored])
    # strong noise: the near channel is noisy, the far one is mostly noise
    assert np.median(near) < 0.0 and np.all(far < near - 15.0)
    for r in scored:
        assert -20.0 <= float(r["mic_machine_far_db"]) <= -12.0
        assert -15.0 <= float(r["mic_env_near_db"]) <= -10.0
    # the noise mix is part of the domain shift: other mains frequency, more babble at the target
    for d, mains in (("source", 50.0), ("target", 60.0)):
        sel = [r for r in scored if r["domain"] == d]
        assert all(abs(float(r["env_mains_hz"]) - mains) < 1.0 for r in sel)
    babble = {
        d: np.mean([float(r["env_babble_db"]) for r in scored if r["domain"] == d])
        for d in ("source", "target")
    }
    assert babble["target"] > babble["source"]
    clean = [r for r in rows if r["label"] == "clean"]
    assert clean and all(r["env_level_db"] == "" and r["mic_sensor_db"] for r in clean)


def test_mono_manifest_keeps_its_columns(small):
    with (small / "synth_manifest.csv").open(newline="") as fh:
        header = next(csv.reader(fh))
    assert header[-1] == "true_attributes" and "channels" not in header


@pytest.mark.parametrize("machine", NF_MACHINES)
def test_machine_is_louder_near_and_noise_louder_far(machine):
    job = next(j for j in _nf_jobs(machine) if (j.split, j.label) == ("test", "anomaly"))
    assert job.mic is not None and job.env is not None
    parts = near_far_parts(job)
    assert set(parts) == {"machine", "background", "environment", "sensor"}
    m, e = parts["machine"], parts["environment"]
    # the machine: as drawn at the near microphone (unit power), 12-20 dB weaker at the far one
    # (a little more with the air low-pass), and later there
    assert abs(_db(m[:, 0])) < 1.0
    loss = _db(m[:, 0]) - _db(m[:, 1])
    assert -job.mic.machine_far_db - 0.5 < loss < -job.mic.machine_far_db + 4.0
    # the environment: at its drawn level near, 10-15 dB louder far
    assert abs(_db(e[:, 0]) - job.env.level_db) < 1.0
    assert abs(_db(e[:, 1]) - _db(e[:, 0]) + job.mic.env_near_db) < 0.5
    # delays: the machine reaches the far microphone later, the noise the near one
    assert _lag(m[:, 0], m[:, 1]) == pytest.approx(job.mic.machine_delay_ms * 16, abs=1.5)
    assert _lag(e[:, 1], e[:, 0]) == pytest.approx(job.mic.env_delay_ms * 16, abs=1.5)
    # the diffuse site background: same level at both, but independent
    b = parts["background"]
    assert abs(_db(b[:, 0]) - _db(b[:, 1])) < 1.0
    assert abs(np.corrcoef(b[:, 0], b[:, 1])[0, 1]) < 0.2
    # the written clip is these parts under one common gain
    y = synthesise(job)
    total = sum(parts.values())
    k = float(np.sum(y * total) / np.sum(total * total))
    assert np.allclose(y, k * total, atol=1e-5)
    # and the far channel follows the noise, the near one the machine
    assert _corr(y[:, 1], e[:, 1]) > 0.9 > _corr(y[:, 0], e[:, 0])
    assert _corr(y[:, 0], m[:, 0]) > _corr(y[:, 1], m[:, 1])


def _lag(a: np.ndarray, b: np.ndarray) -> int:
    """Samples by which ``b`` lags ``a`` (peak of the cross-correlation)."""
    n = a.shape[0]
    xc = np.fft.irfft(np.conj(np.fft.rfft(a, 2 * n)) * np.fft.rfft(b, 2 * n), 2 * n)
    lag = int(np.argmax(xc))
    return lag if lag < n else lag - 2 * n


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_supplemental_near_far_clips():
    jobs = _nf_jobs("fan")
    clean = next(j for j in jobs if j.label == "clean")
    noise = next(j for j in jobs if j.label == "noise")
    assert set(near_far_parts(clean)) == {"machine", "sensor"}
    assert set(near_far_parts(noise)) == {"background", "environment", "sensor"}
    for j in (clean, noise):
        y = synthesise(j)
        assert y.shape == (j.n, 2) and np.all(np.isfinite(y))


def test_noise_db_sets_the_environment_level():
    loud = _nf_jobs("fan", noise_db=10.0)
    soft = _nf_jobs("fan", noise_db=-10.0)
    for a, b in zip(loud, soft):
        if a.env is not None and b.env is not None:
            assert a.env.level_db - b.env.level_db == pytest.approx(20.0)
            assert a.mic == b.mic and a.attrs == b.attrs  # only the noise level changed
    with pytest.raises(ValueError, match="near-far"):
        generate_dataset(Path("/nonexistent/x"), noise_db=0.0)
    with pytest.raises(ValueError, match="channels"):
        generate_dataset(Path("/nonexistent/x"), channels="stereo")


def test_near_far_durations_by_machine_type():
    d = clip_durations(DEFAULT_MACHINES, channels="near-far")
    assert d == NEAR_FAR_DURATIONS and set(d) == set(DEFAULT_MACHINES)
    assert set(d.values()) == {6.0, 10.0, 16.0}
    assert d["valve"] == 6.0 and d["fan"] == 10.0 and d["ToyTrain"] == 16.0
    assert set(clip_durations(DEFAULT_MACHINES).values()) == {10.0}  # mono: as before
    assert set(clip_durations(["fan", "valve"], 2.5, "near-far").values()) == {2.5}


def test_cli_writes_near_far_clips_at_the_type_duration(tmp_path):
    out = tmp_path / "cli"
    args = ["synth", str(out), "--scale", "0.01", "--machines", "valve", "--workers", "1"]
    res = CliRunner().invoke(main, args + ["--channels", "near-far", "--noise-db", "6"])
    assert res.exit_code == 0, res.output
    clips = sorted((out / "dev_data" / "raw" / "valve").rglob("*.wav"))
    assert len(clips) == sum(clip_counts(0.01).values()) + clip_counts(0.01)["test"] * 3
    frames, sr, channels = audio_info(clips[0])
    assert (frames, sr, channels) == (int(NEAR_FAR_DURATIONS["valve"] * 16000), 16000, 2)
    with (out / "synth_manifest.csv").open(newline="") as fh:
        levels = [float(r["env_level_db"]) for r in csv.DictReader(fh) if r["env_level_db"]]
    assert 6.0 - 4.0 <= min(levels) and max(levels) <= 6.0 + 2.0 + 4.0
    res = CliRunner().invoke(main, ["synth", str(tmp_path / "m"), "--noise-db", "0"])
    assert res.exit_code != 0 and "near-far" in res.output
