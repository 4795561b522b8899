"""Catalog and naming: the labels every metric depends on."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from stethoscope.audio import write_wav
from stethoscope.data import Catalog, DataError, NamingError, parse_name
from stethoscope.data.labels import class_labels


def test_parse_dev_eval_and_2020_names():
    p = parse_name("section_00_target_test_anomaly_0021_vel_8_loc_G.wav")
    assert (p.section, p.domain, p.split, p.label, p.index) == (
        "00",
        "target",
        "test",
        "anomaly",
        "0021",
    )
    assert p.attributes == (("vel", "8"), ("loc", "G"))
    p = parse_name("section_00_source_train_normal_0362_car_C2_spd_31V_mic_1.wav")
    assert p.attributes == (("car", "C2"), ("spd", "31V"), ("mic", "1"))
    p = parse_name("section_00_source_train_normal_0000_noAttribute.wav")
    assert p.attributes == () and p.attribute_string == "noAttribute"
    p = parse_name("section_01_0123.wav")
    assert (p.section, p.domain, p.label, p.split) == ("01", None, None, "test")
    p = parse_name("normal_id_02_00000012.wav")
    assert (p.section, p.label, p.attribute_string) == ("02", "normal", "id_02")
    p = parse_name("section_00_source_supplemental_noise_0003_noAttribute.wav")
    assert (p.split, p.label) == ("supplemental", "noise")
    with pytest.raises(NamingError, match="recording_1.wav"):
        parse_name("recording_1.wav")


@pytest.mark.parametrize("subset", ["dcase2020_slider", "dcase2020_mixed", "dcase2023_sample"])
def test_catalog_matches_manifest(shared: Path, subset: str):
    root = shared / "data" / "real" / subset
    cat = Catalog.scan(root)
    assert not cat.issues
    got = Counter((c.machine, c.split, c.domain, c.label) for c in cat.clips)
    want: Counter = Counter()
    with open(shared / "data" / "real" / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["new_path"].startswith(f"data/real/{subset}/"):
                want[(row["machine"], row["split"], row["domain"], row["label"])] += 1
    assert sum(want.values()) > 0
    assert got == want


def test_catalog_reads_all_real_clips(shared: Path):
    from stethoscope.audio import load_audio

    total = 0
    lengths = set()
    for subset in ["dcase2020_slider", "dcase2020_mixed", "dcase2023_sample"]:
        for clip in Catalog.scan(shared / "data" / "real" / subset).clips:
            lengths.add(load_audio(clip.path).shape[0])
            total += 1
    assert total == 231
    assert {160000, 176000, 192000} <= lengths


def test_class_labels_use_attributes_or_domain(shared: Path):
    cat = Catalog.scan(shared / "data" / "real" / "dcase2023_sample")
    train = cat.select(split="train")
    labels, names = class_labels(train)
    assert len(names) == len(set(names)) and labels.min() == 0
    assert "ToyCar|00|car_C2_spd_31V_mic_1" in names
    slider = Catalog.scan(shared / "data" / "real" / "dcase2020_slider").select(split="train")
    _, names = class_labels(slider)
    assert names == ["slider|00|source"]


def _tone(seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_catalog_reports_files_off_the_scheme(tmp_path: Path):
    train = tmp_path / "dev_data" / "raw" / "pump" / "train"
    train.mkdir(parents=True)
    write_wav(train / "section_00_source_train_normal_0000_a_1.wav", _tone())
    write_wav(train / "my_recording.wav", _tone())
    write_wav(train / "section_00_source_train_anomaly_0001_a_1.wav", _tone())
    (train / "notes.txt").write_text("hello")
    cat = Catalog.scan(tmp_path)
    assert [c.name for c in cat.clips] == ["section_00_source_train_normal_0000_a_1.wav"]
    reasons = {i.path.name: i.reason for i in cat.issues}
    assert "naming scheme" in reasons["my_recording.wav"]
    assert "anomalous clip in train" in reasons["section_00_source_train_anomaly_0001_a_1.wav"]
    assert "notes.txt" in reasons
    # a missing attribute file is a notice, not a skipped clip
    assert any(n.path.name == "attributes_00.csv" for n in cat.notices)
    with pytest.raises(DataError, match="my_recording.wav"):
        Catalog.scan(tmp_path, on_error="stop")


def test_catalog_reads_attribute_csv(tmp_path: Path):
    mdir = tmp_path / "dev_data" / "raw" / "fan"
    (mdir / "train").mkdir(parents=True)
    name = "section_00_source_train_normal_0000_m-n_W.wav"
    write_wav(mdir / "train" / name, _tone())
    (mdir / "attributes_00.csv").write_text(f"file_name,d1p,d1v\nfan/train/{name},m-n,W\n")
    cat = Catalog.scan(tmp_path)
    assert cat.attribute_tables["fan"][name] == {"m-n": "W"}
    assert not cat.notices


def test_catalog_errors_name_the_root(tmp_path: Path):
    with pytest.raises(DataError, match="no machine folders"):
        Catalog.scan(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        Catalog.scan(tmp_path / "nope")
