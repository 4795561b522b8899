"""The official baselines on real DCASE2020 slider clips, through `stethoscope run`, pinned figures.

75 normal training clips, 5 normal and 4 anomalous test clips (../shared/data/real/README.md), the
official settings (100 epochs, batch 256). The official baseline's own figures on these clips:
AE-MSE AUC 1.00 / pAUC 1.00, AE-MAHALA AUC 0.85 / pAUC 0.737. With 20 normal/anomalous pairs, one
pair moves the AUC by 0.05, and AE-MAHALA's pair order follows float32 summation order (features,
thread count of the AE's training): the pinned figures are what this code computes, run after run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_official_baselines_on_the_real_slider_clips(shared: Path, tmp_path: Path):
    data = shared / "data" / "real" / "dcase2020_slider"
    run = tmp_path / "run"
    env = {**os.environ, "STETHOSCOPE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "stethoscope", "run", "--systems", "ae-mse,ae-mahala",
         "--data", str(data), "--out", str(run), "--device", "cpu"],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = {}
    for name in ("ae-mse", "ae-mahala"):
        ev = json.loads((run / name / "evaluation.json").read_text())
        m = ev["machines"]["slider"]["00"]
        got[name] = (round(m["auc_source"], 3), round(m["pauc"], 3), m["auc_target"])
    assert got == {"ae-mse": (1.0, 1.0, None), "ae-mahala": (0.95, 0.868, None)}
