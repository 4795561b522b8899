"""Data commands: write a synthetic dataset, precompute the feature cache."""

from __future__ import annotations

import time
from pathlib import Path

import click

from stethoscope.cli.options import (
    CACHE,
    DATA_ROOT,
    DEVICE,
    MACHINES,
    ON_ERROR,
    cache_dir_or_default,
    machine_list,
    report_failures,
)
from stethoscope.data.catalog import OnError


@click.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, help="random seed (same seed, same files)")
@click.option(
    "--scale",
    default=1.0,
    show_default=True,
    help="fraction of the DCASE2025 dev-set clip counts (1.0: 990/10 train, 50x4 test)",
)
@click.option(
    "--duration",
    default=None,
    type=float,
    help="clip length in seconds (default: 10; near-far: 6, 10 or 16 by machine type)",
)
@MACHINES
@click.option("--workers", default=None, type=int, help="processes (default: 2)")
@click.option(
    "--target-train",
    type=int,
    default=None,
    help="target-domain training clips per machine, whatever the scale (DCASE: 10)",
)
@click.option("--overwrite", is_flag=True, help="replace an existing synthetic dataset in OUT_DIR")
@click.option(
    "--channels",
    type=click.Choice(["mono", "near-far"]),
    default="mono",
    show_default=True,
    help="near-far: two-channel clips in the DCASE2026 manner (0: near the machine, 1: farther "
    "away, with strong environmental noise)",
)
@click.option(
    "--noise-db",
    type=float,
    default=None,
    help="near-far only: environmental noise at the near microphone relative to the machine, dB "
    "(default: 3; varied per clip and domain)",
)
def synth(
    out_dir: Path,
    seed: int,
    scale: float,
    duration: float | None,
    machines: str | None,
    workers: int | None,
    target_train: int | None,
    overwrite: bool,
    channels: str,
    noise_db: float | None,
) -> None:
    """Write a synthetic machine-sound dataset in the DCASE dev layout to OUT_DIR (mono clips as in
    DCASE2025, or near/far two-channel clips as in DCASE2026 with --channels near-far)."""
    from stethoscope.synth import generate_dataset
    from stethoscope.ui import progress_display

    with progress_display() as progress:
        summary = generate_dataset(
            out_dir,
            seed=seed,
            scale=scale,
            duration=duration,
            machines=machine_list(machines),
            workers=workers,
            progress=progress,
            overwrite=overwrite,
            target_train=target_train,
            channels=channels,
            noise_db=noise_db,
        )
    click.echo(f"wrote {summary.get('n_clips', '?')} clips to {out_dir}")


@click.command()
@click.option(
    "--system",
    "system",
    default="ae-mse",
    show_default=True,
    help="system whose front-end feature to compute",
)
@click.option("--data", type=DATA_ROOT, required=True)
@CACHE
@DEVICE
@MACHINES
@ON_ERROR
def features(
    system: str,
    data: Path,
    cache_dir: Path | None,
    device: str,
    machines: str | None,
    on_error: OnError,
) -> None:
    """Precompute and cache the features of every clip; prints clips/s."""
    from stethoscope.data import Catalog
    from stethoscope.models.base import FRONTENDS
    from stethoscope.pipeline.features import load_features
    from stethoscope.systems import get_system
    from stethoscope.ui import progress_display

    feature = FRONTENDS.get(get_system(system).frontend.name).feature
    catalog = Catalog.scan(data, on_error=on_error, machines=machine_list(machines))
    cache = cache_dir_or_default(cache_dir)
    t0 = time.perf_counter()
    with progress_display() as progress:
        fs = load_features(
            catalog.clips,
            feature,
            cache_dir=cache,
            device=device,
            on_error=on_error,
            progress=progress,
        )
    dt = time.perf_counter() - t0
    click.echo(
        f"{feature}: {len(fs.clips)} clips in {dt:.1f} s = {len(fs.clips) / dt:.1f} clips/s "
        f"(cache: {cache})"
    )
    report_failures(fs.failures + [(i.path, i.reason) for i in catalog.issues], "extraction")


COMMANDS = [synth, features]
