"""A saved model folder is refused, naming the file and the field, whenever it has been tampered
with or damaged; loading never allocates what a JSON field asks for (through `stethoscope score`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from stethoscope.cli import main
from stethoscope.synth import generate_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A small AE-MAHALA model (front-end weights, back-end arrays, a threshold) and its data."""
    root = tmp_path_factory.mktemp("model")
    data = root / "data"
    generate_dataset(data, seed=1, scale=0.02, duration=1.0, machines=["fan"], workers=1)
    res = CliRunner().invoke(main, ["fit", "--system", "ae-mahala", "--data", str(data),
                                    "--out", str(root / "model"), "--epochs", "1",
                                    "--cache-dir", str(root / "cache")])  # fmt: skip
    assert res.exit_code == 0, res.output
    return root / "model", data


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _edit_tensors(path: Path, edit: Callable[[dict], None]) -> None:
    arrays = load_file(str(path))
    edit(arrays)
    save_file(arrays, str(path))


BACKEND = "backends/fan_section_00"


def _nan_first(arrays: dict) -> None:
    arrays["cov_source"] = arrays["cov_source"].copy()
    arrays["cov_source"][0, 0] = np.nan


CASES = {
    "unknown back end": (
        lambda m: _edit_json(m / "system.json", lambda d: d["system"]["backend"].update(name="x")),
        ["system.json", "field 'system'", "unknown back end 'x'"],
    ),
    "name leaving the folder": (
        lambda m: _edit_json(m / "system.json", lambda d: d.update(sections=[["../../etc", "00"]])),
        ["system.json", "'../../etc' is not a plain file name"],
    ),
    "sections of the wrong type": (
        lambda m: _edit_json(m / "system.json", lambda d: d.update(sections={"fan": "00"})),
        ["system.json", "field 'sections'"],
    ),
    "NaN threshold": (
        lambda m: _edit_json(m / f"{BACKEND}.json", lambda d: d["threshold"].update(value="NaN")),
        ["fan_section_00.json", "field 'threshold.value'"],
    ),
    "threshold of the wrong type": (
        lambda m: _edit_json(m / f"{BACKEND}.json", lambda d: d.update(threshold=[1.0])),
        ["fan_section_00.json", "field 'threshold'"],
    ),
    "missing back-end tensor": (
        lambda m: _edit_tensors(m / f"{BACKEND}.safetensors", lambda a: a.pop("prec_target")),
        ["fan_section_00.safetensors", "tensor 'prec_target' is missing"],
    ),
    "wrong-shape back-end tensor": (
        lambda m: _edit_tensors(
            m / f"{BACKEND}.safetensors", lambda a: a.update(prec_source=np.eye(64))
        ),
        ["fan_section_00.safetensors", "tensor 'prec_source' has shape [64, 64]"],
    ),
    "NaN in a back-end tensor": (
        lambda m: _edit_tensors(m / f"{BACKEND}.safetensors", _nan_first),
        ["fan_section_00.safetensors", "'cov_source' holds NaN"],
    ),
    "truncated front-end weights": (
        lambda m: (m / "frontend" / "frontend.safetensors").write_bytes(
            (m / "frontend" / "frontend.safetensors").read_bytes()[:300]
        ),
        ["frontend.safetensors"],
    ),
    "a JSON field asking for a huge network": (
        lambda m: _edit_json(
            m / "frontend" / "frontend.json",
            lambda d: next(net.update(hidden_dim=10**8) for net in d["networks"].values()),
        ),
        ["frontend"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_tampered_model_folder_is_refused_by_name(trained, tmp_path, case):
    model, data = trained
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    tamper, expected = CASES[case]
    tamper(copy)
    res = CliRunner().invoke(main, ["score", "--model", str(copy), "--data", str(data),
                                    "--out", str(tmp_path / "scores")])  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and "unexpected" not in res.output
    for text in expected:
        assert text in res.output, (case, res.output)
    assert not (tmp_path / "scores").exists()


def test_the_untampered_copy_scores(trained, tmp_path):
    model, data = trained
    res = CliRunner().invoke(main, ["score", "--model", str(model), "--data", str(data),
                                    "--out", str(tmp_path / "scores")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "scores").glob("anomaly_score_*.csv"))) == 1
