"""Options and small helpers shared by the CLI commands."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from stethoscope.data.channels import SETTINGS

DEVICE = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="torch device: auto (CUDA when present), cpu, cuda, cuda:1 ...",
)
CACHE = click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="feature cache folder (default: $STETHOSCOPE_CACHE or ~/.cache/stethoscope)",
)
ON_ERROR = click.option(
    "--on-bad-file",
    "on_error",
    type=click.Choice(["skip", "stop"]),
    default="skip",
    show_default=True,
    help="skip bad/unnamed files with a report, or stop at the first",
)
MACHINES = click.option(
    "--machines", default=None, help="comma-separated machine types (default: all in the dataset)"
)
DATA_ROOT = click.Path(exists=True, file_okay=False, path_type=Path)
CHANNEL_HELP = (
    "what is heard of two-channel (near/far) recordings: auto = near for two-channel data, as "
    "the DCASE2026 baseline; both = both, for the front ends that take two; near-anc = near "
    "with the far channel's noise cancelled from it"
)
CHANNEL_CHOICE = click.Choice(list(SETTINGS))
CHANNEL = click.option(
    "--channel", type=CHANNEL_CHOICE, default="auto", show_default=True, help=CHANNEL_HELP
)


def machine_list(value: str | None) -> list[str] | None:
    """``"fan, valve"`` -> ["fan", "valve"]; None or empty -> None (all machine types)."""
    return [m.strip() for m in value.split(",") if m.strip()] if value else None


def cache_dir_or_default(cache_dir: Path | None) -> Path:
    from stethoscope.features.cache import default_cache_dir

    return cache_dir if cache_dir is not None else default_cache_dir()


def report_failures(failures: Sequence[tuple[object, str]], what: str) -> None:
    """Files skipped during ``what``, by name, on stderr (the first 20)."""
    if failures:
        click.echo(f"{len(failures)} file(s) skipped during {what}:", err=True)
        for path, reason in failures[:20]:
            click.echo(f"  {path}: {reason}", err=True)
        if len(failures) > 20:
            click.echo(f"  ... and {len(failures) - 20} more", err=True)
