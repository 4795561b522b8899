"""The system catalogue: entries are checked when registered, and the README's extension recipe works."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stethoscope.errors import ConfigError
from stethoscope.plugins import load_plugin
from stethoscope.systems import (
    SYSTEMS,
    TABLE1,
    ComponentSpec,
    SystemConfig,
    register_system,
    resolve_systems,
)

README = Path(__file__).resolve().parents[1] / "README.md"


def _system(**overrides: object) -> SystemConfig:
    fields: dict = dict(
        name="broken-entry",
        frontend=ComponentSpec("dualcnn"),
        backend=ComponentSpec("kmeans"),
        threshold=ComponentSpec("percentile"),
        backend_input="embedding",
    )
    fields.update(overrides)
    return SystemConfig(**fields)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"backend": ComponentSpec("no-such-backend")}, "unknown back end 'no-such-backend'"),
        ({"frontend": ComponentSpec("no-such-frontend")}, "unknown front end 'no-such-frontend'"),
        ({"threshold": ComponentSpec("no-such-rule")}, "unknown threshold rule 'no-such-rule'"),
        ({"backend_input": "residual"}, "front end 'dualcnn' does not produce 'residual'"),
        (
            {"backend": ComponentSpec("ae-mse"), "backend_input": "views"},
            "back end 'ae-mse' does not take 'views'",
        ),
    ],
)
def test_a_broken_system_entry_is_refused_with_its_name(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        register_system(_system(**overrides))
    assert "system 'broken-entry'" in str(err.value)
    assert "broken-entry" not in SYSTEMS


def test_a_module_with_a_broken_entry_fails_at_import(tmp_path):
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(
        "from stethoscope.systems import ComponentSpec, SystemConfig, register_system\n"
        "register_system(SystemConfig(name='ae-knn', frontend=ComponentSpec('ae'),\n"
        "    backend=ComponentSpec('kmeans'), threshold=ComponentSpec('percentile'),\n"
        "    backend_input='residual'))\n"
    )
    with pytest.raises(ConfigError, match="system 'ae-knn': back end 'kmeans' does not take"):
        load_plugin(str(plugin))
    # through the CLI: one line naming the entry, no traceback
    proc = subprocess.run(
        [sys.executable, "-m", "stethoscope", "--plugin", str(plugin), "systems"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "system 'ae-knn'" in proc.stderr and "Traceback" not in proc.stderr


def test_all_means_table_1_in_catalogue_order():
    names = [c.name for c in resolve_systems("all")]
    assert names == list(TABLE1)
    catalogue = SYSTEMS.names()
    assert [n for n in catalogue if n in TABLE1] == list(TABLE1)
    assert catalogue[0] == "spectral"  # the report lists systems in catalogue order


def test_the_readme_back_end_recipe_works_as_written(tmp_path):
    """The code block of the README's "A back end" section, run as a plugin in a real study."""
    from stethoscope.synth import generate_dataset

    text = README.read_text(encoding="utf-8")
    section = text[text.index("### A back end") : text.index("### A front end")]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    command = re.search(r"```bash\n(stethoscope --plugin .*?)\n```", section, re.S)
    assert code and command
    plugin = tmp_path / "my_backend.py"
    plugin.write_text(code.group(1))
    data = tmp_path / "data"
    generate_dataset(data, scale=0.02, duration=2.0, machines=["fan"], target_train=2, seed=3)
    args = command.group(1).split()[1:]
    args = [str(plugin) if a == "my_backend.py" else a for a in args]
    args = [a.replace("spectral-nearest,ae-mse", "spectral-nearest") for a in args]
    args[args.index("ROOT")] = str(data)
    args[args.index("runs/nn")] = str(tmp_path / "run")
    env = {**os.environ, "STETHOSCOPE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "stethoscope", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "run" / "spectral-nearest" / "clip_scores.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and {r["domain"] for r in rows} == {"source", "target"}
    assert all(0.0 <= float(r["score"]) <= 2.0 for r in rows)
    assert "spectral-nearest" in (tmp_path / "run" / "summary.json").read_text()
