"""Score-level fusion of systems: standardised on each member's training scores only, through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stethoscope.cli import main
from stethoscope.data import Catalog
from stethoscope.pipeline.features import load_features
from stethoscope.pipeline.fit import section_fit_data
from stethoscope.pipeline.fusion import FusionModel
from stethoscope.pipeline.system_model import SystemModel, load_model
from stethoscope.synth import generate_dataset
from stethoscope.systems import ComponentSpec, register_system
from stethoscope.systems.config import SYSTEMS, fusion_system


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fusion")
    data = root / "data"
    generate_dataset(data, seed=6, scale=0.02, duration=1.0, machines=["fan", "valve"], workers=1)
    if "test-fusion" not in SYSTEMS:
        register_system(
            fusion_system(
                "test-fusion", ("spectral", "ae-mse"), ComponentSpec("percentile", {"q": 90.0}), ""
            )
        )
    run = root / "run"
    res = CliRunner().invoke(main, ["run", "--systems", "test-fusion", "--data", str(data),
                                    "--out", str(run), "--epochs", "2",
                                    "--cache-dir", str(root / "cache")])  # fmt: skip
    assert res.exit_code == 0, res.output
    return run, data


def test_a_fusion_trains_its_members_and_reports_like_any_system(fused_run):
    run, _ = fused_run
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) == {"spectral", "ae-mse", "test-fusion"}  # members added to the study
    model = load_model(run / "test-fusion" / "model", device="cpu")
    assert isinstance(model, FusionModel) and list(model.members) == ["spectral", "ae-mse"]
    assert (run / "test-fusion" / "model" / "members" / "ae-mse" / "system.json").exists()


def test_the_standardisation_uses_only_training_scores(fused_run):
    run, data = fused_run
    fusion = load_model(run / "test-fusion" / "model", device="cpu")
    assert isinstance(fusion, FusionModel)
    catalog = Catalog.scan(data)
    train = catalog.select(split="train")
    for name, member in fusion.members.items():
        assert isinstance(member, SystemModel)
        feats = load_features(train, member.frontend.feature, cache_dir=None, device="cpu")
        j = list(fusion.members).index(name)
        for key, fs in fusion.sections.items():
            _, data_ = section_fit_data(member.config, member.frontend, feats, *key)
            scores = member.sections[key].backend.threshold_scores(data_)
            assert fs.means[j] == pytest.approx(np.nanmean(scores), rel=1e-9)
            assert fs.stds[j] == pytest.approx(np.nanstd(scores), rel=1e-9)
    # a test clip's fused score is the mean of its members' standardised scores
    rows = {}
    for name in fusion.members:
        with open(run / name / "clip_scores.csv") as fh:
            rows[name] = {
                (r["machine"], r["file_name"]): float(r["score"]) for r in csv.DictReader(fh)
            }
    with open(run / "test-fusion" / "clip_scores.csv") as fh:
        fused = list(csv.DictReader(fh))
    assert len(fused) == len(rows["spectral"])
    for r in fused[:10]:
        fs = fusion.sections[(r["machine"], r["section"])]
        member_scores = np.array([rows[m][(r["machine"], r["file_name"])] for m in fusion.members])
        want = np.mean((member_scores - fs.means) / fs.stds)
        assert float(r["score"]) == pytest.approx(want, rel=1e-9)


def test_a_finished_study_with_a_fusion_runs_again_without_retraining(fused_run, tmp_path):
    run, data = fused_run
    saved = (run / "test-fusion" / "model" / "system.json").read_bytes()
    res = CliRunner().invoke(main, ["run", "--systems", "test-fusion", "--data", str(data),
                                    "--out", str(run), "--epochs", "2",
                                    "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (run / "test-fusion" / "model" / "system.json").read_bytes() == saved


def test_a_saved_fusion_is_checked_on_its_data(fused_run, tmp_path):
    run, data = fused_run
    sys_json = run / "test-fusion" / "model" / "system.json"
    original = sys_json.read_text()
    meta = json.loads(original)
    args = ["run", "--systems", "test-fusion", "--data", str(data), "--out", str(run),
            "--epochs", "2", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    try:
        # as older versions saved it: the first member's features and channel
        meta["info"]["trained_on"].update(feature={"name": "logmel", "key": "x"}, channel="mix")
        sys_json.write_text(json.dumps(meta))
        assert CliRunner().invoke(main, args).exit_code == 0
        meta["info"]["trained_on"]["data"]["n_train"] += 1  # made from other data: refused
        sys_json.write_text(json.dumps(meta))
        res = CliRunner().invoke(main, args)
        assert res.exit_code != 0 and "other data" in res.output
    finally:
        sys_json.write_text(original)
