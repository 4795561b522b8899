"""End to end through the project's own commands: fit, score, evaluate, run (resume), saved models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stethoscope.cli import main
from stethoscope.synth import generate_dataset

MACHINES = ["fan", "valve"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, seed=3, scale=0.02, duration=2.0, machines=MACHINES, workers=1)
    return root


def _invoke(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_fit_score_evaluate_and_fresh_process(tiny_data: Path, tmp_path: Path):
    model = tmp_path / "model"
    _invoke(
        "fit",
        "--system",
        "ae-mse",
        "--data",
        str(tiny_data),
        "--out",
        str(model),
        "--epochs",
        "2",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert (model / "system.json").exists()
    from safetensors import safe_open

    with safe_open(str(model / "frontend" / "frontend.safetensors"), "np") as fh:
        parts = sorted({name.split("/")[0] for name in fh.keys()})
    assert parts == ["fan", "valve"]  # one AE per machine type
    # a model directory is loaded without pickle: every file is JSON or safetensors
    assert {p.suffix for p in model.rglob("*") if p.is_file()} <= {".json", ".safetensors"}

    # score new clips in a fresh process with no access to the training data
    new_root = tmp_path / "new"
    for m in MACHINES:
        shutil.copytree(
            tiny_data / "dev_data" / "raw" / m / "test", new_root / "dev_data" / "raw" / m / "test"
        )
    scores = tmp_path / "scores"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "stethoscope",
            "score",
            "--model",
            str(model),
            "--data",
            str(new_root),
            "--out",
            str(scores),
        ],
        check=True,
        capture_output=True,
    )
    for m in MACHINES:
        rows = (scores / f"anomaly_score_{m}_section_00_test.csv").read_text().splitlines()
        n_test = len(list((new_root / "dev_data" / "raw" / m / "test").glob("*.wav")))
        assert len(rows) == n_test
        assert (scores / f"decision_result_{m}_section_00_test.csv").exists()
    out = _invoke("evaluate", str(scores), "--json", str(tmp_path / "ev.json"))
    assert "official score" in out.lower()
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert set(ev["machines"]) == set(MACHINES)
    assert 0.0 < ev["official_score"] <= 1.0


def test_bad_clips_are_reported_and_the_rest_processed(tiny_data: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns(".stethoscope_cache"))
    train = data / "dev_data" / "raw" / "fan" / "train"
    test = data / "dev_data" / "raw" / "fan" / "test"
    bad_train = train / "section_00_source_train_normal_0999_noAttribute.wav"
    bad_train.write_bytes(b"RIFF\x00\x00")
    bad_test = test / "section_00_source_test_normal_0999_noAttribute.wav"
    bad_test.write_bytes(b"")
    model = tmp_path / "m"
    res = CliRunner().invoke(
        main,
        [
            "fit",
            "--system",
            "spectral",
            "--data",
            str(data),
            "--out",
            str(model),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert bad_train.name in res.output
    res = CliRunner().invoke(
        main,
        [
            "score",
            "--model",
            str(model),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "s"),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert bad_test.name in res.output
    names = (tmp_path / "s" / "anomaly_score_fan_section_00_test.csv").read_text()
    assert bad_test.name not in names
    assert len(names.splitlines()) == len(list(test.glob("*.wav"))) - 1
    # stop policy: the first bad file ends the run with its name
    res = CliRunner().invoke(
        main,
        [
            "fit",
            "--system",
            "spectral",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "m2"),
            "--on-bad-file",
            "stop",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert res.exit_code != 0
    assert bad_train.name in str(res.output) + str(res.exception)


def test_run_layout_resume_and_conflict(tiny_data: Path, tmp_path: Path):
    run = tmp_path / "run"
    args = [
        "run",
        "--systems",
        "spectral,ae-mse,ae-mahala",
        "--data",
        str(tiny_data),
        "--out",
        str(run),
        "--epochs",
        "2",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    _invoke(*args)
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) == {"spectral", "ae-mse", "ae-mahala"}
    for name in summary:
        ev = json.loads((run / name / "evaluation.json").read_text())
        assert set(ev["machines"]) == set(MACHINES)
        assert ev["official_score"] == summary[name]["official_score"]
        assert len(list((run / name / "scores").glob("anomaly_score_*_section_00_test.csv"))) == 2
    # ae-mse and ae-mahala share one trained AE: identical front-end weights
    a = (run / "ae-mse" / "model" / "frontend" / "frontend.safetensors").read_bytes()
    b = (run / "ae-mahala" / "model" / "frontend" / "frontend.safetensors").read_bytes()
    assert a == b
    assert (run / "report" / "index.html").exists()

    # a re-run redoes nothing
    before = (run / "ae-mse" / "evaluation.json").stat().st_mtime_ns
    out = _invoke(*args)
    assert "skipped (finished earlier)" in out
    assert (run / "ae-mse" / "evaluation.json").stat().st_mtime_ns == before

    # an interrupted study (evaluation missing) is completed by scoring the saved model only
    (run / "ae-mahala" / "evaluation.json").unlink()
    out = _invoke(*args)
    assert "scored (model reused)" in out

    # a different configuration under the same name is never overwritten silently
    res = CliRunner().invoke(
        main, args[:-4] + ["--epochs", "3", "--cache-dir", str(tmp_path / "cache")]
    )
    assert res.exit_code != 0
    assert "different configuration" in res.output


def test_saved_model_scores_match_in_process(tiny_data: Path, tmp_path: Path):
    from stethoscope.data import Catalog
    from stethoscope.pipeline.fit import fit_systems
    from stethoscope.pipeline.score import score_clips
    from stethoscope.pipeline.system_model import SystemModel
    from stethoscope.systems import get_system

    cat = Catalog.scan(tiny_data)
    cfg = get_system("ae-mahala").with_frontend_params(epochs=2)
    rep = fit_systems(cat, [cfg], save_to=lambda c: tmp_path / "m", cache_dir=tmp_path / "c")
    test = cat.select(split="test")
    a, _ = score_clips(rep.models[cfg.name], test, cache_dir=tmp_path / "c")
    b, _ = score_clips(SystemModel.load(tmp_path / "m"), test, cache_dir=tmp_path / "c")
    for key in a:
        np.testing.assert_allclose(a[key][1], b[key][1], rtol=1e-6)
        np.testing.assert_array_equal(a[key][2], b[key][2])


def test_embedding_systems_end_to_end(tiny_data: Path, tmp_path: Path):
    """The CNN back ends and the ACAE through `run`: one CNN training serves three back ends."""
    run = tmp_path / "run"
    cfg = tmp_path / "study.yaml"
    cfg.write_text(
        f"data: {tiny_data}\nout: {run}\ncache_dir: {tmp_path / 'cache'}\n"
        "systems: [cnn-kmeans, cnn-ds, cnn-dtmm, acae]\n"
        "frontends:\n  dualcnn: {epochs: 1, batch_size: 16, n_views: 3, ensemble: 2}\n"
        "  acae: {epochs: 1, batch_size: 16}\n"
    )
    out = _invoke("run", "--config", str(cfg))
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) == {"cnn-kmeans", "cnn-ds", "cnn-dtmm", "acae"}
    for name, v in summary.items():
        assert 0.0 < v["official_score"] <= 1.0, name
        clip_scores = (run / name / "clip_scores.csv").read_text().splitlines()
        assert len(clip_scores) == 1 + sum(
            len(list((tiny_data / "dev_data" / "raw" / m / "test").glob("*.wav"))) for m in MACHINES
        )
    w = [
        (run / s / "model" / "frontend" / "frontend.safetensors").read_bytes()
        for s in ("cnn-kmeans", "cnn-ds", "cnn-dtmm")
    ]
    assert w[0] == w[1] == w[2]
    # a 2-seed ensemble: one back end per member, scores averaged
    ds = json.loads((run / "cnn-ds" / "model" / "backends" / "fan_section_00.json").read_text())
    assert ds["backend"] == "ensemble" and len(ds["state"]["members"]) == 2
    # DtMM decides with its own threshold T = mu + k sigma of the held-out KLs
    meta = json.loads((run / "cnn-dtmm" / "model" / "backends" / "fan_section_00.json").read_text())
    assert meta["threshold"]["rule"] == "mu-k-sigma"
    from stethoscope.state_io import load_state

    arrays, _ = load_state(run / "cnn-dtmm" / "model" / "backends", "fan_section_00")
    kls = (arrays["m0.held_out"] + arrays["m1.held_out"]) / 2  # the two members' held-out KLs
    kls = kls[~np.isnan(kls)]  # NaN: the clips the baselines were fitted on
    assert np.isclose(meta["threshold"]["value"], kls.mean() + 3.0 * kls.std(), rtol=1e-9)
    for name in ("acae", "cnn-dtmm"):  # scored on embeddings / on views: both get a 2-D map input
        emb = np.load(run / name / "embeddings.npz")
        rows = (run / name / "clip_scores.csv").read_text().splitlines()[1:]
        assert list(emb["file_name"]) == [r.split(",")[2] for r in rows]
        assert emb["x"].shape[0] == len(rows)
    # the map shows what was scored: acae's back end gives its clip scores again from them
    from stethoscope.pipeline.system_model import SystemModel

    acae = SystemModel.load(run / "acae" / "model", device="cpu")
    emb = np.load(run / "acae" / "embeddings.npz")
    table = [r.split(",") for r in (run / "acae" / "clip_scores.csv").read_text().splitlines()[1:]]
    for (machine, section), sm in acae.sections.items():
        mine = [i for i, r in enumerate(table) if (r[0], r[1]) == (machine, section)]
        want = [float(table[i][5]) for i in mine]
        np.testing.assert_allclose(sm.backend.score(emb["x"][mine]), want, rtol=1e-5)
    assert "report:" in out and (run / "report" / "index.html").exists()


def test_evaluation_set_names_with_ground_truth(tiny_data: Path, tmp_path: Path):
    """Eval-style names (section_00_NNNN.wav): labels hidden in the data, given by a ground truth."""
    from stethoscope.data import Catalog

    root = tmp_path / "eval_root"
    gt = tmp_path / "gt"
    for sub in ("ground_truth_data", "ground_truth_domain"):
        (gt / sub).mkdir(parents=True)
    src = tiny_data / "dev_data" / "raw" / "fan"
    shutil.copytree(src / "train", root / "eval_data" / "raw" / "fan" / "train")
    test_dir = root / "eval_data" / "raw" / "fan" / "test"
    test_dir.mkdir(parents=True)
    labels, domains = [], []
    for i, clip in enumerate(sorted((src / "test").glob("*.wav"))):
        name = f"section_00_{i:04d}.wav"
        shutil.copy(clip, test_dir / name)
        labels.append(f"{name},{int('_anomaly_' in clip.name)}")
        domains.append(f"{name},{int('_target_' in clip.name)}")
    (gt / "ground_truth_data" / "ground_truth_fan_section_00_test.csv").write_text(
        "\n".join(labels) + "\n"
    )
    (gt / "ground_truth_domain" / "ground_truth_fan_section_00_test.csv").write_text(
        "\n".join(domains) + "\n"
    )
    cat = Catalog.scan(root)
    assert {c.dataset for c in cat.clips} == {"eval"}
    assert all(c.label is None and c.domain is None for c in cat.select(split="test"))
    run = tmp_path / "run"
    out = _invoke(
        "run",
        "--systems",
        "spectral",
        "--data",
        str(root),
        "--out",
        str(run),
        "--ground-truth",
        str(gt),
        "--cache-dir",
        str(tmp_path / "c"),
    )
    ev = json.loads((run / "spectral" / "evaluation.json").read_text())
    assert set(ev["machines"]) == {"fan"}
    assert ev["machines"]["fan"]["00"]["auc_target"] is not None
    assert "official score" in out


def test_front_ends_with_different_settings_are_trained_separately(tiny_data: Path, tmp_path: Path):
    """acae and its no-attention ablation share a front-end name but not a model."""
    run = tmp_path / "run"
    cfg = tmp_path / "study.yaml"
    cfg.write_text(
        f"data: {tiny_data}\nout: {run}\ncache_dir: {tmp_path / 'cache'}\n"
        "systems: [acae, acae-noattn]\nfrontends:\n  acae: {epochs: 1, batch_size: 16}\n"
    )
    _invoke("run", "--config", str(cfg))
    a = (run / "acae" / "model" / "frontend" / "frontend.safetensors").read_bytes()
    b = (run / "acae-noattn" / "model" / "frontend" / "frontend.safetensors").read_bytes()
    assert a != b
    assert len(list((run / ".work").iterdir())) == 2


def test_a_symlink_loop_is_a_bad_file_named_not_an_abort(tmp_path: Path):
    data = tmp_path / "data"
    generate_dataset(data, seed=4, scale=0.02, duration=1.0, machines=["fan"], workers=1)
    loop = data / "dev_data" / "raw" / "fan" / "train" / "section_00_source_train_normal_0999_x.wav"
    loop.symlink_to(loop.name)  # points at itself
    args = ["run", "--systems", "spectral", "--data", str(data), "--cache-dir", str(tmp_path / "c")]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "section_00_source_train_normal_0999_x.wav" in res.output
    assert "symbolic links" in res.output
    res = CliRunner().invoke(
        main, [*args, "--out", str(tmp_path / "run2"), "--on-bad-file", "stop"]
    )
    assert res.exit_code == 1 and "0999_x.wav" in res.output and "Traceback" not in res.output


def test_resampled_downmixed_silent_files_and_untested_machines_are_in_the_run_summary(
    tmp_path: Path,
):
    import soundfile as sf

    data = tmp_path / "data"
    generate_dataset(data, seed=5, scale=0.02, duration=1.0, machines=["fan", "valve"], workers=1)
    train = data / "dev_data" / "raw" / "fan" / "train"
    wave, sr = sf.read(next(train.glob("*.wav")), dtype="float32")
    sf.write(train / "section_00_source_train_normal_0990_x.wav", np.stack([wave, wave], 1), sr)
    sf.write(train / "section_00_source_train_normal_0991_x.wav", wave[::2], sr // 2)
    sf.write(train / "section_00_source_train_normal_0992_x.wav", 0 * wave, sr)
    shutil.rmtree(data / "dev_data" / "raw" / "valve" / "test")
    args = ["run", "--systems", "spectral", "--data", str(data), "--channel", "mix",
            "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    for out in ("run", "run-warm"):  # the second run reads every feature from the cache
        res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / out)])
        assert res.exit_code == 0, res.output
        notes = json.loads((tmp_path / out / "notes.json").read_text())
        text = "\n".join(notes)
        assert "0990_x.wav: 2 channels mixed down to mono" in text
        assert "0991_x.wav: sample rate 8000 Hz, resampled to 16000 Hz" in text
        assert "0992_x.wav: silent" in text
        assert "valve section 00: no test clips in the data" in text
        assert "notes on the data" in res.output and "0990_x.wav" in res.output
