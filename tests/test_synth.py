"""Synthetic data generator: layout, naming, attributes, determinism, faults and difficulty."""

from __future__ import annotations

import copy
import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from stethoscope.audio import audio_info, load_audio
from stethoscope.data import Catalog
from stethoscope.synth import DEFAULT_MACHINES, MACHINES, anomalies, clip_counts, generate_dataset
from stethoscope.synth.check import evaluate_dataset, quick_check

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
