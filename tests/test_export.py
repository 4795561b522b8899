"""`stethoscope export --format onnx` and the torch-free runtime: the same scores as torch.

Tiny models of every exportable front end are trained on a synthetic set, exported, and scored
both ways on the real slider clips of ../shared (out of their training distribution, so their back
ends see unusual inputs). The runtime is also run in a process where importing torch, scipy,
scikit-learn or librosa fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from scipy import special

from stethoscope.audio import load_audio
from stethoscope.backends.special import logsumexp, softmax
from stethoscope.cli import main
from stethoscope.data import Catalog
from stethoscope.detector import Detector, model_id
from stethoscope.dsp.logmel import NumpyLogMel
from stethoscope.errors import ModelError
from stethoscope.export.acae import ACAEFeatures
from stethoscope.export.dualcnn import spectrogram, spectrum
from stethoscope.export.manifest import read_manifest
from stethoscope.export.runtime import load_onnx_detector
from stethoscope.export.writer import FILTERBANK, export_model
from stethoscope.features import LogMel, LogMelConfig
from stethoscope.features.logmel import mel_filterbank
from stethoscope.models.acae.inputs import FeatureSpec, acae_features
from stethoscope.models.dualcnn.inputs import SpectrogramFeature, SpectrumFeature
from stethoscope.pipeline.fit import fit_systems
from stethoscope.pipeline.fusion import fit_fusion
from stethoscope.pipeline.system_model import SystemModel
from stethoscope.score_table import read_scores_table
from stethoscope.synth import generate_dataset
from stethoscope.systems import ComponentSpec, get_system
from stethoscope.systems.config import fusion_system

CNN = dict(epochs=1, batch_size=16, n_views=2)
ACAE = dict(epochs=1, batch_size=8, input_seconds=0.5, freq_bins=32, channels=(4, 8), d_model=16,
            latent_dim=8, heads=2, dropout=0.0)  # fmt: skip
SYSTEMS = ["ae-mse", "ae-mahala", "cnn-kmeans", "cnn-ds", "cnn-dtmm", "acae"]
RTOL = 1e-4
BLOCKED = ("torch", "sklearn", "scipy", "librosa")


@pytest.fixture(scope="module")
def slider(shared: Path) -> list[Path]:
    return sorted((shared / "data/real/dcase2020_slider/dev_data/raw/slider/test").glob("*.wav"))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny trained models of every exportable front end, and a fusion of two of them."""
    root = tmp_path_factory.mktemp("export")
    data = root / "synth"
    generate_dataset(data, seed=5, scale=0.02, duration=2.0, machines=["fan", "valve"], workers=1)
    configs = [get_system(n) for n in SYSTEMS[:2]] + [
        get_system(n).with_frontend_params(**CNN) for n in SYSTEMS[2:5]
    ]
    configs = [c.with_frontend_params(epochs=2) if c.frontend.name == "ae" else c for c in configs]
    configs.append(get_system("acae").with_frontend_params(**ACAE))
    out = {c.name: root / f"model-{c.name}" for c in configs}
    cat = Catalog.scan(data)
    rep = fit_systems(cat, configs, save_to=lambda c: out[c.name], cache_dir=root / "cache",
                      device="cpu")  # fmt: skip
    cfg = fusion_system("export-fusion", ("ae-mahala", "cnn-kmeans"),
                        ComponentSpec("percentile", {"q": 90.0}), "")  # fmt: skip
    members = {n: rep.models[n] for n in cfg.members}
    fusion = fit_fusion(cfg, members, cat.select(split="train"), cache_dir=root / "cache",
                        device="cpu", on_error="skip")  # fmt: skip
    out["fusion"] = root / "model-fusion"
    fusion.save(out["fusion"])
    return out


@pytest.fixture(scope="module")
def exported(models: dict[str, Path]) -> dict[str, Path]:
    out = {}
    for name, path in models.items():
        out[name] = path.parent / f"onnx-{name}"
        export_model(path, out[name])
    return out


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))


@pytest.mark.parametrize("name", [*SYSTEMS, "fusion"])
def test_onnx_scores_equal_torch_on_real_clips(name, models, exported, slider):
    torch_det = Detector.load(models[name], device="cpu")
    onnx_det = load_onnx_detector(exported[name])
    assert onnx_det.runtime == "onnx" and onnx_det.model_id == model_id(models[name])
    assert onnx_det.describe()["machines"] == torch_det.describe()["machines"]
    kept_t = {}
    kept_o = {}
    want, bad_t = torch_det.score_many(slider, "fan", keep_inputs=kept_t)
    got, bad_o = onnx_det.score_many(slider, "fan", keep_inputs=kept_o)
    assert not bad_t and not bad_o and len(got) == len(slider)
    assert _rel([r.score for r in want], [r.score for r in got]) < RTOL
    for w, g in zip(want, got, strict=True):
        assert g.threshold == w.threshold and g.file == w.file
        if abs(w.score - w.threshold) > RTOL * abs(w.threshold):
            assert g.decision == w.decision
    assert set(kept_o) == set(kept_t)
    for label, x in kept_t.items():  # the back-end inputs themselves (not kept for a fusion)
        x, y = np.asarray(x, dtype=np.float64), np.asarray(kept_o[label], dtype=np.float64)
        assert x.shape == y.shape and np.abs(x - y).max() <= 1e-4 * max(np.abs(x).max(), 1e-6)


def test_the_export_folder_says_what_it_holds(models, exported):
    man = read_manifest(exported["cnn-dtmm"])
    assert man["source_model_id"] == model_id(models["cnn-dtmm"])
    assert man["backend_input"] == "views" and man["frontend"]["n_views"] == 2
    assert [m["outputs"] for m in man["frontend"]["members"]] == [["embedding"]]
    assert (exported["cnn-dtmm"] / man["frontend"]["members"][0]["file"]).is_file()
    ae = read_manifest(exported["ae-mse"])
    assert set(ae["frontend"]["networks"]) == {"fan", "valve"}
    assert ae["feature"]["config"]["n_frames"] == 5 and (exported["ae-mse"] / FILTERBANK).is_file()
    fusion = read_manifest(exported["fusion"])
    assert fusion["kind"] == "fusion" and fusion["members"] == ["ae-mahala", "cnn-kmeans"]
    for member in fusion["members"]:
        assert read_manifest(exported["fusion"] / "members" / member)["kind"] == "system"
    # the back-end state is copied as it is
    for f in (models["ae-mahala"] / "backends").iterdir():
        assert (exported["ae-mahala"] / "backends" / f.name).read_bytes() == f.read_bytes()


_RUNNER = """
import json, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
from stethoscope.audio import AudioError
from stethoscope.export.runtime import load_onnx_detector

exports, files, odd_rate = json.loads(sys.argv[1])
out = {{}}
for name, path in exports.items():
    det = load_onnx_detector(path, threads=1)
    out[name] = [det.score(f, "fan").score for f in files]
try:
    det.score(odd_rate, "fan")
    out["odd_rate"] = "scored"
except AudioError as exc:
    out["odd_rate"] = str(exc)
out["imported"] = sorted({{m.split(".")[0] for m in sys.modules}} & set({blocked!r}))
print(json.dumps(out))
"""


def test_the_runtime_needs_no_torch_scipy_sklearn_or_librosa(models, exported, slider, tmp_path):
    files = [str(p) for p in slider[:3]]
    odd = tmp_path / "at_22k.wav"
    sf.write(odd, np.zeros(22050, dtype=np.float32), 22050, subtype="PCM_16")
    args = json.dumps([{n: str(p) for n, p in exported.items()}, files, str(odd)])
    proc = subprocess.run([sys.executable, "-c", _RUNNER.format(blocked=BLOCKED), args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    assert got["imported"] == []
    assert "22050 Hz" in got["odd_rate"] and "librosa" in got["odd_rate"]
    for name, path in models.items():
        want = [r.score for r in Detector.load(path, device="cpu").score_many(files, "fan")[0]]
        assert _rel(want, got[name]) < RTOL, name


def test_cli_export_then_score_gives_the_torch_scores(models, slider, tmp_path):
    runner = CliRunner()
    out = tmp_path / "ae-onnx"
    res = runner.invoke(main, ["export", "--model", str(models["ae-mahala"]), "--format", "onnx",
                               "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "exported ae-mahala" in res.output
    tables = {}
    for runtime, model in (("torch", models["ae-mahala"]), ("onnx", out)):
        csv = tmp_path / f"{runtime}.csv"
        res = runner.invoke(main, ["score", "--runtime", runtime, "--model", str(model),
                                   *map(str, slider[:4]), "--machine", "valve", "--out", str(csv),
                                   "--device", "cpu"])  # fmt: skip
        assert res.exit_code == 0, res.output
        tables[runtime] = read_scores_table(csv)
    assert "onnx" in res.output
    t, o = tables["torch"], tables["onnx"]
    assert [r["file"] for r in t] == [r["file"] for r in o] == [str(p) for p in slider[:4]]
    assert _rel([float(r["score"]) for r in t], [float(r["score"]) for r in o]) < RTOL
    keep = ("decision", "threshold", "system", "model_id", "machine", "section")
    assert [{k: r[k] for k in keep} for r in t] == [{k: r[k] for k in keep} for r in o]
    # exporting again replaces the earlier export
    res = runner.invoke(main, ["export", "--model", str(models["ae-mse"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert read_manifest(out)["system"] == "ae-mse"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_export_refuses_a_folder_that_is_not_an_export(models, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(main, ["export", "--model", str(models["ae-mse"]), "--out",
                                    str(target)])  # fmt: skip
    assert res.exit_code != 0 and "not a Stethoscope export folder" in res.output
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    res = CliRunner().invoke(main, ["score", "--runtime", "onnx", "--model", str(models["ae-mse"]),
                                    str(target / "notes.txt"), "--machine", "fan", "--out",
                                    str(tmp_path / "s.csv")])  # fmt: skip
    assert res.exit_code != 0 and "not an ONNX export" in res.output


def test_a_tampered_export_is_refused_naming_the_file(exported, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(exported["cnn-kmeans"], broken)
    onnx_file = broken / "frontend" / "dualcnn_member_0.onnx"
    onnx_file.unlink()
    with pytest.raises(ModelError, match=f"{onnx_file}: missing"):
        load_onnx_detector(broken)
    changed = tmp_path / "changed"
    shutil.copytree(exported["ae-mahala"], changed)
    state = changed / "backends" / "fan_section_00.json"
    state.write_text(state.read_text().replace('"value"', '"value" ', 1))
    with pytest.raises(ModelError, match=f"{state}: contents differ from the manifest"):
        load_onnx_detector(changed)


# -- the numpy pieces against their torch counterparts -------------------------------------------


def test_numpy_log_mel_matches_the_torch_features(slider):
    waves = [load_audio(p) for p in slider[:2]]
    fb = mel_filterbank(16000, 1024, 128, 0.0, None)
    ours = NumpyLogMel(fb)
    for w, theirs in zip(waves, LogMel().compute_batch(waves), strict=True):
        assert np.abs(ours.vectors(w) - theirs).max() < 1e-3  # dB
    two = np.stack([waves[0], waves[1][: len(waves[0])]])  # near, far
    both = LogMel(LogMelConfig(channel="both")).compute_batch([two])[0]
    assert np.abs(ours.vectors(two) - both).max() < 1e-3


def test_numpy_network_inputs_match_the_torch_features(slider):
    w = load_audio(slider[0])
    waves = np.stack([w[:32000], w[16000:48000]])
    lens = np.array([32000, 20000])  # the second clip padded: its mean ignores the padding
    with torch.no_grad():
        spec = SpectrogramFeature()(torch.from_numpy(waves), torch.from_numpy(lens)).numpy()
        spec_bins = SpectrumFeature(32000).n_bins
        full = SpectrumFeature(32000)(torch.from_numpy(waves)).numpy()
    assert np.abs(spectrogram(waves, lens, 1024, 512) - spec).max() < 1e-4 * np.abs(spec).max()
    assert np.abs(spectrum(waves, spec_bins) - full).max() < 1e-4 * np.abs(full).max()
    fs = FeatureSpec(input_samples=32000, freq_bins=48, avg_window=3, max_freq_hz=7000.0)
    with torch.no_grad():
        want = acae_features(torch.from_numpy(waves), fs).numpy()
    got = ACAEFeatures({**vars(fs), "amin": 1e-5})(waves)
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-3  # dB


def test_numpy_logsumexp_and_softmax_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=50.0, size=(20, 7))
    x[0, :3] = -np.inf  # some classes impossible
    x[1] = x[1, 0]  # ties
    for axis in (0, 1):
        np.testing.assert_allclose(logsumexp(x, axis=axis), special.logsumexp(x, axis=axis),
                                   rtol=1e-13)  # fmt: skip
        np.testing.assert_allclose(softmax(x, axis=axis), special.softmax(x, axis=axis),
                                   rtol=1e-12, atol=1e-300)  # fmt: skip
    np.testing.assert_allclose(logsumexp(x, axis=1, keepdims=True),
                               special.logsumexp(x, axis=1, keepdims=True), rtol=1e-13)  # fmt: skip


def test_a_dtmm_model_with_held_out_nans_loads(models):
    """cnn-dtmm keeps NaN held-out scores for the clips its mixture was fitted on."""
    model = SystemModel.load(models["cnn-dtmm"], device="cpu")
    held = model.sections[("fan", "00")].backend.held_out
    assert np.isnan(held).any() and np.isfinite(held).any()


def test_export_needs_a_model_folder(tmp_path):
    with pytest.raises(ModelError, match="not a model folder"):
        export_model(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists() and os.listdir(tmp_path) == []
