"""One long recording among short clips sets neither the networks' input length nor their memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from stethoscope.cli import main
from stethoscope.models.clip_length import typical_length, window_starts
from stethoscope.synth import generate_dataset


def test_typical_length_is_the_capped_median():
    waves = [np.zeros(32000)] * 5 + [np.zeros(16000 * 600)]
    assert typical_length(waves, 16000) == 32000
    assert typical_length([np.zeros(16000 * 30)] * 3, 16000) == 16 * 16000  # the cap


def test_windows_cover_a_long_clip_evenly():
    assert window_starts(30000, 32000) == [0]
    assert window_starts(32000, 32000) == [0]
    starts = window_starts(100_000, 32000)
    assert starts == [0, 22667, 45333, 68000] and starts[-1] + 32000 == 100_000


@pytest.mark.parametrize("system", ["cnn-kmeans", "acae"])
def test_a_ten_minute_clip_among_two_second_clips(tmp_path: Path, system: str):
    data = tmp_path / "data"
    generate_dataset(data, seed=2, scale=0.02, duration=2.0, machines=["fan"], workers=1)
    rng = np.random.default_rng(0)
    long = (0.05 * rng.standard_normal(16000 * 600)).astype(np.float32)
    raw = data / "dev_data" / "raw" / "fan"
    sf.write(raw / "train" / "section_00_source_train_normal_0999_x_1.wav", long, 16000)
    sf.write(raw / "test" / "section_00_source_test_normal_0999_x_1.wav", long, 16000)
    frontend = {"cnn-kmeans": "dualcnn", "acae": "acae"}[system]
    cfg = tmp_path / "study.yaml"
    cfg.write_text(
        f"data: {data}\nout: {tmp_path / 'run'}\ncache_dir: {tmp_path / 'cache'}\n"
        f"systems: [{system}]\nfrontends:\n  {frontend}: {{epochs: 1, batch_size: 8}}\n"
    )
    res = CliRunner().invoke(main, ["run", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    meta = json.loads(
        (tmp_path / "run" / system / "model" / "frontend" / "frontend.json").read_text()
    )
    text = json.dumps(meta)
    # the model's input is the median clip (2 s), not the ten minutes
    assert ('"input_len": 32000' in text) or ('"input_seconds": 2.0' in text), text[:500]
    rows = (tmp_path / "run" / system / "clip_scores.csv").read_text().splitlines()[1:]
    scored = {r.split(",")[2]: float(r.split(",")[5]) for r in rows}
    assert np.isfinite(scored["section_00_source_test_normal_0999_x_1.wav"])
