"""The thin CLI: commands that need no data."""

from click.testing import CliRunner

from stethoscope.cli import main
from stethoscope.systems import get_system, system_names


def test_systems_lists_every_registered_system_in_aligned_columns():
    out = CliRunner().invoke(main, ["systems"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split()[:2] == ["system", "front"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == list(system_names()) and "cnn-kmeans-dn" in names
    starts = {
        line.index(get_system(n).backend.name, len(n) + 1) for n, line in zip(names, lines[1:])
    }
    assert len(starts) == 1  # the back-end column starts at the same place on every line
