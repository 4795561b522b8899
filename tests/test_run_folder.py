"""A run folder is a promise: results belong to their data, nothing the user made is overwritten,
outputs honour the umask, and one process writes a folder at a time (all through the CLI)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stethoscope.cli import main
from stethoscope.pipeline.folder_lock import LOCK_NAME
from stethoscope.synth import generate_dataset


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    a, b = root / "A", root / "B"
    generate_dataset(a, seed=0, scale=0.02, duration=1.0, machines=["fan", "valve"], workers=1)
    generate_dataset(b, seed=7, scale=0.02, duration=1.0, machines=["fan", "valve"], workers=1)
    return a, b


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def _spectral(data: Path, out: Path, cache: Path, *extra: str) -> tuple[int, str]:
    return _run("run", "--systems", "spectral", "--data", str(data), "--out", str(out),
                "--cache-dir", str(cache), *extra)  # fmt: skip


def test_a_run_folder_refuses_other_data_and_redoes_it_with_overwrite(two_datasets, tmp_path):
    a, b = two_datasets
    out, cache = tmp_path / "R", tmp_path / "cache"
    code, _ = _spectral(a, out, cache)
    assert code == 0
    score_a = json.loads((out / "summary.json").read_text())["spectral"]["official_score"]
    code, output = _spectral(b, out, cache)
    assert code == 1
    assert "made from other data" in output and "--overwrite" in output
    assert "skipped (finished earlier)" not in output
    code, output = _spectral(b, out, cache, "--overwrite")
    assert code == 0, output
    record = json.loads((out / "run.json").read_text())["data"]
    assert record["root"] == os.path.abspath(b)
    score_b = json.loads((out / "summary.json").read_text())["spectral"]["official_score"]
    assert score_b != score_a and f"{100 * score_b:.2f}" in output
    # other machine types into the same folder: refused too
    code, output = _spectral(b, out, cache, "--machines", "fan")
    assert code == 1 and "machine types" in output


def test_a_reused_model_says_what_it_was_trained_on(two_datasets, tmp_path):
    a, b = two_datasets
    model = tmp_path / "model"
    code, output = _run("fit", "--system", "spectral", "--data", str(a), "--out", str(model),
                        "--cache-dir", str(tmp_path / "c"))  # fmt: skip
    assert code == 0, output
    code, output = _run("score", "--model", str(model), "--data", str(b), "--out",
                        str(tmp_path / "s"), "--cache-dir", str(tmp_path / "c"))  # fmt: skip
    assert code == 0, output
    assert f"trained on {os.path.abspath(a)}" in output and "fan, valve" in output


def test_a_folder_that_is_not_a_run_folder_is_refused(two_datasets, tmp_path):
    a, _ = two_datasets
    mine = tmp_path / "my_notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("do not lose me")
    code, output = _spectral(a, mine, tmp_path / "cache")
    assert code == 1 and "not a Stethoscope run folder" in output
    assert (mine / "thesis.tex").read_text() == "do not lose me"
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    # `fit --out` likewise
    code, output = _run("fit", "--system", "spectral", "--data", str(a), "--out", str(mine))
    assert code == 1 and "not a Stethoscope model folder" in output


def test_stale_score_files_of_another_machine_set_are_not_evaluated(two_datasets, tmp_path):
    a, _ = two_datasets
    out, cache = tmp_path / "R", tmp_path / "cache"
    assert _spectral(a, out, cache)[0] == 0
    scores = out / "spectral" / "scores"
    # a score file left from a machine set of an earlier run (same run folder and data)
    stale = scores / "anomaly_score_pump_section_00_test.csv"
    stale.write_text("section_00_source_test_normal_0000_x.wav,1.0\n")
    (scores / "decision_result_pump_section_00_test.csv").write_text(
        "section_00_source_test_normal_0000_x.wav,1\n"
    )
    (out / "spectral" / "evaluation.json").unlink()  # make the run score and evaluate again
    code, output = _spectral(a, out, cache)
    assert code == 0, output
    ev = json.loads((out / "spectral" / "evaluation.json").read_text())
    assert set(ev["machines"]) == {"fan", "valve"}
    assert not stale.exists()


def test_a_read_only_out_fails_before_any_training(two_datasets, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    a, _ = two_datasets
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, output = _run("run", "--systems", "ae-mse", "--data", str(a), "--out",
                            str(ro / "run"), "--epochs", "1")  # fmt: skip
    finally:
        ro.chmod(0o755)
    assert code == 1 and "Traceback" not in output and "ae " not in output


def test_an_unwritable_out_is_named_before_training(two_datasets, tmp_path):
    a, _ = two_datasets
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    code, output = _run("run", "--systems", "ae-mse", "--data", str(a), "--out",
                        str(blocker / "run"), "--epochs", "1")  # fmt: skip
    assert code == 1 and str(blocker) in output
    assert "epochs" not in output  # refused before any training


def test_outputs_honour_the_umask(two_datasets, tmp_path):
    a, _ = two_datasets
    out, cache = tmp_path / "R", tmp_path / "cache"
    before = os.umask(0o022)
    try:
        assert _spectral(a, out, cache)[0] == 0
    finally:
        os.umask(before)
    files = [p for p in list(out.rglob("*")) + list(cache.rglob("*")) if p.is_file()]
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert modes and all(m == 0o644 for m in modes.values()), modes


def test_a_second_run_into_a_folder_in_use_refuses(two_datasets, tmp_path):
    a, _ = two_datasets
    out, cache = tmp_path / "R", tmp_path / "cache"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "since": "now"}
        (out / LOCK_NAME).write_text(json.dumps(lock))
        code, output = _spectral(a, out, cache)
        assert code == 1 and f"pid {holder.pid}" in output and "being written" in output
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, taken over, and released at the end
    code, output = _spectral(a, out, cache)
    assert code == 0, output
    assert not (out / LOCK_NAME).exists()
