"""Scoring commands: a saved model on the test clips of a dataset."""

from __future__ import annotations

from pathlib import Path

import click

from stethoscope.cli.options import (
    CACHE,
    CHANNEL_CHOICE,
    CHANNEL_HELP,
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
@click.option("--model", "model_dir", type=DATA_ROOT, required=True)
@click.option("--data", type=DATA_ROOT, required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="scores folder")
@click.option(
    "--channel", type=CHANNEL_CHOICE, default=None, help=CHANNEL_HELP + " [default: the model's]"
)
@click.option(
    "--force-channel",
    is_flag=True,
    help="score on --channel though the model was trained on another",
)
@MACHINES
@CACHE
@DEVICE
@ON_ERROR
def score(
    model_dir: Path,
    data: Path,
    out: Path,
    channel: str | None,
    force_channel: bool,
    machines: str | None,
    cache_dir: Path | None,
    device: str,
    on_error: OnError,
) -> None:
    """Score the test clips of ROOT with a saved model: official score/decision CSVs."""
    from stethoscope.data import Catalog
    from stethoscope.pipeline.score import choose_channel, score_catalog
    from stethoscope.pipeline.system_model import load_model
    from stethoscope.ui import progress_display

    model = load_model(model_dir, device=device)
    click.echo(f"model {model.config.name}, trained on {model.describe_training_data()}")
    choose_channel(model, channel, force_channel)
    catalog = Catalog.scan(data, on_error=on_error, machines=machine_list(machines))
    with progress_display() as progress:
        rep = score_catalog(
            model,
            catalog,
            out,
            cache_dir=cache_dir_or_default(cache_dir),
            device=device,
            on_error=on_error,
            progress=progress,
        )
    for machine, section, n in rep.written:
        click.echo(f"{machine} section {section}: {n} clips scored")
    for item in rep.skipped_machines:
        click.echo(f"not scored (no back end in this model): {item}", err=True)
    report_failures(rep.failures + [(i.path, i.reason) for i in catalog.issues], "scoring")
    click.echo(f"CSVs in {out}")


COMMANDS = [score]
