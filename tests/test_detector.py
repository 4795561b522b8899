"""The detector on plain recordings: same scores as the DCASE layout, from files, bytes or samples."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from stethoscope.audio import AudioError
from stethoscope.cli import main
from stethoscope.data import Catalog
from stethoscope.detector import Detector, UnknownTarget, find_recordings, model_id
from stethoscope.pipeline.fit import fit_systems
from stethoscope.pipeline.score import score_catalog
from stethoscope.pipeline.system_model import load_model
from stethoscope.score_table import read_scores_table
from stethoscope.synth import generate_dataset
from stethoscope.systems import get_system

MACHINES = ["fan", "valve"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A tiny dataset, and an AE-MSE and a dual-CNN (k-means) model trained on it."""
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, seed=5, scale=0.02, duration=2.0, machines=MACHINES, workers=1)
    cat = Catalog.scan(root)
    configs = [
        get_system("ae-mse").with_frontend_params(epochs=2),
        get_system("cnn-kmeans").with_frontend_params(epochs=1, batch_size=16, n_views=2),
    ]
    models = {c.name: root.parent / f"model-{c.name}" for c in configs}
    fit_systems(cat, configs, save_to=lambda c: models[c.name], cache_dir=root.parent / "cache")
    return root, models


def _dcase_scores(root: Path, model_dir: Path, tmp: Path) -> dict[str, float]:
    model = load_model(model_dir, device="cpu")
    rep = score_catalog(model, Catalog.scan(root, machines=["fan"]), tmp / "official")
    clips, scores, _ = rep.results[("fan", "00")]
    return {c.name: float(s) for c, s in zip(clips, scores, strict=True)}


@pytest.mark.parametrize("system", ["ae-mse", "cnn-kmeans"])
def test_plain_folder_scores_equal_the_dcase_layout(tiny, tmp_path, system):
    root, models = tiny
    expected = _dcase_scores(root, models[system], tmp_path)
    # the same clips, renamed as an engineer would and spread over nested folders
    plain = tmp_path / "recordings"
    test_dir = root / "dev_data" / "raw" / "fan" / "test"
    names = {}
    for i, src in enumerate(sorted(test_dir.glob("*.wav"))):
        dst = plain / f"day{i % 3}" / f"pump_recording_{i}.WAV"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
        names[str(dst)] = src.name
    det = Detector.load(models[system])
    files, missing = find_recordings([plain])
    assert not missing and len(files) == len(expected)
    results, failures = det.score_many(files, "fan", domain="source")
    assert not failures
    for r in results:
        assert r.score == pytest.approx(expected[names[r.file]], rel=1e-5, abs=1e-6)
        assert r.decision == int(r.score > r.threshold)
        assert r.model_id == model_id(models[system]) and r.system == system
        assert r.section == "00" and r.domain == "source"


def test_bytes_file_objects_and_samples_score_as_the_file(tiny):
    root, models = tiny
    det = Detector.load(models["ae-mse"])
    path = next((root / "dev_data" / "raw" / "valve" / "test").glob("*.wav"))
    by_path = det.score(path, "valve")
    raw = path.read_bytes()
    assert det.score(raw, "valve").score == pytest.approx(by_path.score, rel=1e-6)
    assert det.score(io.BytesIO(raw), "valve").score == pytest.approx(by_path.score, rel=1e-6)
    y, sr = sf.read(path, dtype="int16")
    from_int = det.score(y, "valve", sample_rate=sr)
    from_float = det.score(y.astype(np.float32) / 32768, "valve", sample_rate=sr)
    assert from_int.score == pytest.approx(by_path.score, rel=1e-6)
    assert from_float.score == pytest.approx(by_path.score, rel=1e-6)
    assert set(by_path.timings) == {"decode_ms", "features_ms", "model_ms", "total_ms"}
    # the same clip at 44.1 kHz is resampled (and says so), or refused when resampling is off
    import librosa

    y44 = librosa.resample(y.astype(np.float32) / 32768, orig_sr=sr, target_sr=44100)
    res = det.score(y44, "valve", sample_rate=44100)
    assert any("resampled" in n for n in res.notes)
    strict = Detector.load(models["ae-mse"], resample=False)
    with pytest.raises(AudioError, match="44100 Hz"):
        strict.score(y44, "valve", sample_rate=44100)


def test_bad_recordings_are_named_and_the_rest_scored(tiny, tmp_path):
    root, models = tiny
    det = Detector.load(models["ae-mse"])
    good = sorted((root / "dev_data" / "raw" / "fan" / "test").glob("*.wav"))[:2]
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("not audio")
    sf.write(tmp_path / "short.wav", np.zeros(100, np.float32), 16000)
    bad = [tmp_path / "empty.wav", tmp_path / "notes.wav", tmp_path / "short.wav"]
    results, failures = det.score_many([good[0], *bad, good[1]], "fan")
    assert [r.file for r in results] == [str(good[0]), str(good[1])]
    reasons = {Path(f.file).name: f.reason for f in failures}
    assert "0 bytes" in reasons["empty.wav"]
    assert "corrupt" in reasons["notes.wav"]
    assert "too short" in reasons["short.wav"]
    with pytest.raises(AudioError, match="upload.wav: empty"):
        det.score(b"", "fan", name="upload.wav")


def test_unknown_machine_section_and_domain_name_the_field(tiny):
    _, models = tiny
    det = Detector.load(models["ae-mse"])
    assert det.machines() == MACHINES and det.sections("fan") == ["00"]
    for kwargs, field in (
        ({"machine": "pump"}, "machine"),
        ({"machine": "fan", "section": "07"}, "section"),
        ({"machine": "fan", "domain": "factory"}, "domain"),
    ):
        with pytest.raises(UnknownTarget) as err:
            det.score(np.zeros(16000, np.float32), sample_rate=16000, **kwargs)
        assert err.value.field == field
    assert det.resolve("fan", "0") == "00"
    info = det.describe()
    assert set(info["machines"]) == set(MACHINES)
    assert info["machines"]["fan"]["00"]["threshold"] == det.threshold("fan")


def test_model_id_follows_the_files(tiny, tmp_path):
    _, models = tiny
    copy = tmp_path / "copy"
    shutil.copytree(models["ae-mse"], copy)
    assert model_id(copy) == model_id(models["ae-mse"])
    meta = copy / "backends" / "fan_section_00.json"
    meta.write_text(meta.read_text().replace('"n_train"', '"n_train" ', 1))
    assert model_id(copy) != model_id(models["ae-mse"])


def test_score_command_on_plain_recordings(tiny, tmp_path):
    root, models = tiny
    rec = tmp_path / "rec"
    rec.mkdir()
    for i, src in enumerate(sorted((root / "dev_data" / "raw" / "fan" / "test").glob("*.wav"))[:4]):
        shutil.copy(src, rec / f"clip {i}.wav")
    (rec / "broken.wav").write_text("nope")
    (rec / "readme.txt").write_text("not a recording: not searched")
    out = tmp_path / "scores.csv"
    res = CliRunner().invoke(
        main,
        ["score", "--model", str(models["ae-mse"]), str(rec), "--machine", "fan",
         "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "broken.wav" in res.output
    rows = read_scores_table(out)
    assert len(rows) == 4
    assert list(rows[0])[:6] == ["file", "score", "decision", "threshold", "system", "model_id"]
    assert {r["model_id"] for r in rows} == {model_id(models["ae-mse"])}
    # a file the user made is never replaced by a scores table
    mine = tmp_path / "mine.csv"
    mine.write_text("my,own,data\n")
    res = CliRunner().invoke(
        main, ["score", "--model", str(models["ae-mse"]), str(rec), "--machine", "fan",
               "--out", str(mine)],
    )  # fmt: skip
    assert res.exit_code != 0 and "not a Stethoscope scores table" in res.output
    assert mine.read_text() == "my,own,data\n"
    # --machine is needed, and a machine type the model lacks is named
    res = CliRunner().invoke(main, ["score", "--model", str(models["ae-mse"]), str(rec),
                                    "--out", str(out)])  # fmt: skip
    assert res.exit_code != 0 and "--machine" in res.output
    res = CliRunner().invoke(main, ["score", "--model", str(models["ae-mse"]), str(rec),
                                    "--machine", "pump", "--out", str(out)])  # fmt: skip
    assert res.exit_code != 0 and "'pump'" in res.output


def test_back_end_inputs_are_kept_by_name_on_request(tiny):
    root, models = tiny
    det = Detector.load(models["cnn-kmeans"])
    files = sorted((root / "dev_data" / "raw" / "fan" / "test").glob("*.wav"))[:3]
    kept: dict = {}
    results, _ = det.score_many(files, "fan", keep_inputs=kept)
    assert set(kept) == {r.file for r in results}
    backend = det.model.sections[("fan", "00")].backend
    for r in results:
        assert float(backend.score(kept[r.file][None])[0]) == pytest.approx(r.score, rel=1e-9)
