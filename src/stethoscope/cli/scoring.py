"""Scoring commands: a saved model on the test clips of a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from stethoscope.detector import Detector


@click.command()
@click.option("--model", "model_dir", type=DATA_ROOT, required=True)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--data", type=DATA_ROOT, default=None, help="a DCASE-layout dataset: score its test clips"
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="with --data: a folder for the official CSVs; with PATHs: a CSV file",
)
@click.option("--machine", default=None, help="with PATHs: the machine type they were recorded on")
@click.option("--section", default=None, help="with PATHs: the section (default: the only one)")
@click.option(
    "--domain",
    type=click.Choice(["source", "target"]),
    default=None,
    help="with PATHs: the domain, recorded with each score",
)
@click.option(
    "--runtime",
    type=click.Choice(["torch", "onnx"]),
    default="torch",
    show_default=True,
    help="onnx: a folder written by `stethoscope export`, scored with onnxruntime",
)
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
    paths: tuple[Path, ...],
    data: Path | None,
    out: Path,
    machine: str | None,
    section: str | None,
    domain: str | None,
    runtime: str,
    channel: str | None,
    force_channel: bool,
    machines: str | None,
    cache_dir: Path | None,
    device: str,
    on_error: OnError,
) -> None:
    """Score recordings with a saved model.

    \b
    Plain recordings, any names (files or folders, searched recursively):
      stethoscope score --model MODEL rec1.wav recordings/ --machine pump --out scores.csv
    The test clips of a DCASE-layout dataset, as official score/decision CSVs:
      stethoscope score --model MODEL --data ROOT --out SCORES_DIR
    """
    if data is not None and paths:
        raise click.UsageError("give either --data ROOT or recording PATHs, not both")
    if data is None and not paths:
        raise click.UsageError("give recording PATHs (files or folders) or --data ROOT")
    if paths:
        if machine is None:
            raise click.UsageError("--machine is needed with recording PATHs")
        _score_recordings(
            model_dir, paths, out, machine, section, domain, runtime, channel, force_channel,
            device, on_error,
        )  # fmt: skip
        return
    if runtime != "torch":
        raise click.UsageError("--runtime onnx scores recording PATHs, not --data")
    assert data is not None
    _score_dataset(
        model_dir, data, out, channel, force_channel, machines, cache_dir, device, on_error
    )


def _score_dataset(
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


def _score_recordings(
    model_dir: Path,
    paths: tuple[Path, ...],
    out: Path,
    machine: str,
    section: str | None,
    domain: str | None,
    runtime: str,
    channel: str | None,
    force_channel: bool,
    device: str,
    on_error: OnError,
) -> None:
    from stethoscope.detector import find_recordings
    from stethoscope.score_table import write_scores_table

    detector = _load_detector(model_dir, runtime, device, channel, force_channel)
    files, missing = find_recordings(paths)
    if on_error == "stop" and missing:
        raise click.ClickException(f"{missing[0].file}: {missing[0].reason}")
    if not files:
        raise click.ClickException(
            f"no .wav or .flac recordings in {', '.join(str(p) for p in paths)}"
        )
    click.echo(
        f"model {detector.system} ({detector.model_id}, {detector.runtime}): "
        f"{len(files)} recording(s) of {machine}"
    )
    results, failures = detector.score_many(
        files, machine, section, domain, on_error=on_error, names=[str(f) for f in files]
    )
    write_scores_table(out, results)
    n_anomalous = sum(r.decision for r in results)
    click.echo(f"{len(results)} scored, {n_anomalous} above the threshold; scores in {out}")
    report_failures([(f.file, f.reason) for f in missing + failures], "scoring")


def _load_detector(
    model_dir: Path, runtime: str, device: str, channel: str | None, force_channel: bool
) -> Detector:
    if runtime == "onnx":
        from stethoscope.export.runtime import load_onnx_detector

        return load_onnx_detector(model_dir)
    from stethoscope.detector import Detector

    return Detector.load(model_dir, device=device, channel=channel, force_channel=force_channel)


COMMANDS = [score]
