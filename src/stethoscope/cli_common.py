"""Options and small helpers shared by the CLI commands."""

from __future__ import annotations

from pathlib import Path

import click


DEVICE = click.option("--device", default="auto", show_default=True,
                      help="torch device: auto (CUDA when present), cpu, cuda, cuda:1 ...")
CACHE = click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                     help="feature cache folder (default: $STETHOSCOPE_CACHE or ~/.cache/stethoscope)")
ON_ERROR = click.option("--on-bad-file", "on_error", type=click.Choice(["skip", "stop"]),
                        default="skip", show_default=True,
                        help="skip bad/unnamed files with a report, or stop at the first")
MACHINES = click.option("--machines", default=None,
                        help="comma-separated machine types (default: all in the dataset)")


def _machines(value: str | None) -> list[str] | None:
    return [m.strip() for m in value.split(",") if m.strip()] if value else None


def _cache(cache_dir: Path | None, data: Path | None = None) -> Path:
    from stethoscope.features.cache import default_cache_dir

    return cache_dir if cache_dir is not None else default_cache_dir()
