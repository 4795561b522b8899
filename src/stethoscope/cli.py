"""Command line: thin wrappers over the library; every command has --help."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from stethoscope import __version__

log = logging.getLogger("stethoscope")

from stethoscope.cli_common import MACHINES, _machines


class _Group(click.Group):
    """Turns the toolkit's expected errors (bad data, conflicts) into one clear line, no traceback."""

    def invoke(self, ctx: click.Context):
        from stethoscope.audio import AudioError
        from stethoscope.data.catalog import DataError

        try:
            return super().invoke(ctx)
        except (DataError, AudioError, FileNotFoundError, FileExistsError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stethoscope")
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def main(verbose: bool) -> None:
    """Stethoscope: unsupervised anomalous sound detection for machine condition monitoring.

    Typical use: `stethoscope run --systems all --data ROOT --out RUN_DIR`.
    """
    from stethoscope.ui import setup_logging

    setup_logging(verbose)


@main.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, help="random seed (same seed, same files)")
@click.option("--scale", default=1.0, show_default=True,
              help="fraction of the DCASE2025 dev-set clip counts (1.0: 990/10 train, 50x4 test)")
@click.option("--duration", default=10.0, show_default=True, help="clip length in seconds")
@MACHINES
@click.option("--workers", default=None, type=int, help="processes (default: 2)")
@click.option("--target-train", type=int, default=None,
              help="target-domain training clips per machine, whatever the scale (DCASE: 10)")
@click.option("--overwrite", is_flag=True, help="replace an existing synthetic dataset in OUT_DIR")
def synth(out_dir: Path, seed: int, scale: float, duration: float, machines: str | None,
          workers: int | None, target_train: int | None, overwrite: bool) -> None:
    """Write a synthetic machine-sound dataset in the DCASE2025 dev layout to OUT_DIR."""
    from stethoscope.synth import generate_dataset
    from stethoscope.ui import progress_display

    with progress_display() as progress:
        cb = (lambda d, t: progress("synthesising clips", d, t, {})) if progress else None
        summary = generate_dataset(out_dir, seed=seed, scale=scale, duration=duration,
                                   machines=_machines(machines), workers=workers, progress=cb,
                                   overwrite=overwrite, target_train=target_train)
    click.echo(f"wrote {summary.get('n_clips', '?')} clips to {out_dir}")


@main.command()
@click.argument("scores_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--ground-truth", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="folder with ground_truth_data/, ground_truth_domain/ "
                                 "(and ground_truth_attributes/) for evaluation-set names")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="also write the metrics as JSON")
@click.option("--result-csv", type=click.Path(path_type=Path), default=None,
              help="also write the official evaluator's result CSV to this path")
def evaluate(scores_dir: Path, ground_truth: Path | None, json_path: Path | None,
             result_csv: Path | None) -> None:
    """Official DCASE metrics (AUC-s, AUC-t, pAUC, P/R/F1, official score) of a scores folder."""
    from stethoscope.evaluation import EvaluationError, evaluate_scores_dir

    try:
        result = evaluate_scores_dir(scores_dir, ground_truth=ground_truth)
    except EvaluationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(result.format_table())
    for note in result.notes:
        click.echo(f"note: {note}")
    if result_csv:
        result.write_result_csv(result_csv)
        click.echo(f"result CSV: {result_csv}")
    if json_path:
        result.write_json(json_path)
        click.echo(f"JSON: {json_path}")


@main.command(name="systems")
def list_systems() -> None:
    """List the systems that can be trained, with their front end, back end and threshold."""
    from stethoscope.systems.config import get_system, system_names

    rows = [(name, (cfg := get_system(name)).frontend.name, cfg.backend.name, cfg.threshold.name,
             cfg.description) for name in system_names()]
    header = ("system", "front end", "back end", "threshold", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])


from stethoscope.cli_pipeline import register as _register_pipeline  # noqa: E402

_register_pipeline(main)


if __name__ == "__main__":
    sys.exit(main())
