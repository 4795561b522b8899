"""Training commands: train one system (`fit`), run a whole study (`run`), the demo.

`fit` and `run` scale out under torchrun (``torchrun --nproc-per-node N -m stethoscope fit ...``):
each process joins the group (:func:`stethoscope.distributed.session`), all train, rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stethoscope.cli.options import (
    CACHE,
    CHANNEL,
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
@click.option("--system", required=True, help="system name (see `stethoscope systems`)")
@click.option("--data", type=DATA_ROOT, required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="model directory")
@click.option("--epochs", type=int, default=None, help="override the front end's epochs")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="set a front-end parameter (of a fusion: of its members), VALUE read as YAML "
    "(repeatable): --param batch_size=16",
)
@MACHINES
@CACHE
@DEVICE
@ON_ERROR
@CHANNEL
def fit(
    system: str,
    data: Path,
    out: Path,
    epochs: int | None,
    params: tuple[str, ...],
    machines: str | None,
    cache_dir: Path | None,
    device: str,
    on_error: OnError,
    channel: str,
) -> None:
    """Train a system on the training clips of ROOT and save it to a model directory.

    Interrupted, the same command resumes from the last epoch checkpoint in OUT/.work. Started by
    torchrun, its processes train together and the first one writes the model.
    """
    from stethoscope import distributed
    from stethoscope.data import Catalog
    from stethoscope.pipeline.fit import fit_model_dir
    from stethoscope.systems import SystemConfig, get_system
    from stethoscope.ui import progress_display

    overrides = _parse_params(params)

    def configured(cfg: SystemConfig) -> SystemConfig:
        if overrides and not cfg.members:
            cfg = cfg.with_frontend_params(**overrides)
        if epochs is not None and "epochs" in cfg.frontend.params:
            return cfg.with_frontend_params(epochs=epochs)
        return cfg

    cfg = configured(get_system(system))
    members = [configured(get_system(m)) for m in cfg.members]
    catalog = Catalog.scan(data, on_error=on_error, machines=machine_list(machines))
    with distributed.session(device), progress_display(enabled=distributed.is_main()) as progress:
        rep = fit_model_dir(
            catalog,
            cfg,
            out,
            machines=machine_list(machines),
            cache_dir=cache_dir_or_default(cache_dir),
            device=device,
            on_error=on_error,
            progress=progress,
            members=members,
            channel=channel,
        )
        if not distributed.is_main():
            return
    model = rep.fusions.get(cfg.name) or rep.models[cfg.name]
    click.echo(f"saved {cfg.name} to {out} ({len(model.sections)} machine/section back ends)")
    report_failures(rep.failures + [(i.path, i.reason) for i in catalog.issues], "training")
    for note in [str(n) for n in catalog.notices] + rep.notes:
        click.echo(f"note: {note}", err=True)


@click.command()
@click.option("--systems", default=None, help="comma-separated system names, or 'all' (Table 1)")
@click.option("--data", type=DATA_ROOT, default=None)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="run folder")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML study config (alternative to the flags)",
)
@click.option("--epochs", type=int, default=None, help="override every front end's epochs")
@click.option(
    "--ground-truth",
    type=DATA_ROOT,
    default=None,
    help="ground-truth folder for evaluation-set names",
)
@click.option("--overwrite", is_flag=True, help="replace systems saved with another config")
@click.option(
    "--channel", type=CHANNEL_CHOICE, default=None, help=CHANNEL_HELP + " [default: auto]"
)
@MACHINES
@CACHE
@DEVICE
@ON_ERROR
def run(
    systems: str | None,
    data: Path | None,
    out: Path | None,
    config_path: Path | None,
    epochs: int | None,
    ground_truth: Path | None,
    overwrite: bool,
    channel: str | None,
    machines: str | None,
    cache_dir: Path | None,
    device: str,
    on_error: OnError,
) -> None:
    """Fit, score, decide and evaluate systems; resumes an interrupted run. Started by torchrun,
    its processes train the front ends together and the first one writes the run folder."""
    from stethoscope import distributed
    from stethoscope.pipeline.spec import StudySpec
    from stethoscope.pipeline.study import execute_study

    spec = StudySpec.from_yaml(config_path) if config_path else StudySpec()
    spec = spec.merged(
        systems=systems,
        data=data,
        out=out,
        epochs=epochs,
        ground_truth=ground_truth,
        machines=machine_list(machines),
        cache_dir=cache_dir,
        device=device,
        on_error=on_error,
        overwrite=overwrite or None,
        channel=channel,
    )
    with distributed.session(spec.device):
        execute_study(spec)


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo_out"),
    show_default=True,
    help="folder for the synthetic data and the run",
)
@click.option(
    "--systems",
    default="all",
    show_default=True,
    help="systems to run ('all' = the six systems of Table 1)",
)
@click.option("--seed", default=0, show_default=True)
@DEVICE
def demo(out: Path, systems: str, seed: int, device: str) -> None:
    """Generate a small synthetic dataset and run the whole study on it (no download)."""
    from stethoscope.pipeline.demo import run_demo

    run_demo(out, systems=systems, seed=seed, device=device)


def _parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    """``("batch_size=16", "compile=true")`` -> {"batch_size": 16, "compile": True} (YAML values)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{item!r}: {exc}", param_hint="--param") from exc
    return out


COMMANDS = [fit, run, demo]
