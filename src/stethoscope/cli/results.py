"""Result commands: evaluate a scores folder, rebuild a run's report, list the systems."""

from __future__ import annotations

from pathlib import Path

import click

from stethoscope.cli.options import DATA_ROOT


@click.command()
@click.argument("scores_dir", type=DATA_ROOT)
@click.option(
    "--ground-truth",
    type=DATA_ROOT,
    default=None,
    help="folder with ground_truth_data/, ground_truth_domain/ "
    "(and ground_truth_attributes/) for evaluation-set names",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="also write the metrics as JSON",
)
@click.option(
    "--result-csv",
    type=click.Path(path_type=Path),
    default=None,
    help="also write the official evaluator's result CSV to this path",
)
def evaluate(
    scores_dir: Path, ground_truth: Path | None, json_path: Path | None, result_csv: Path | None
) -> None:
    """Official DCASE metrics (AUC-s, AUC-t, pAUC, P/R/F1, official score) of a scores folder."""
    from stethoscope.evaluation import evaluate_scores_dir

    result = evaluate_scores_dir(scores_dir, ground_truth=ground_truth)
    click.echo(result.format_table())
    for note in result.notes:
        click.echo(f"note: {note}")
    if result_csv:
        result.write_result_csv(result_csv)
        click.echo(f"result CSV: {result_csv}")
    if json_path:
        result.write_json(json_path)
        click.echo(f"JSON: {json_path}")


@click.command()
@click.argument("run_dir", type=DATA_ROOT)
@click.option("--tsne", is_flag=True, help="t-SNE instead of PCA for the embedding maps")
def report(run_dir: Path, tsne: bool) -> None:
    """Rebuild the report (tables, plots, HTML) of a run folder from its saved results."""
    from stethoscope.report import build_report
    from stethoscope.report.tables import table1_text

    path = build_report(run_dir, tsne=tsne)
    click.echo(table1_text(run_dir))
    click.echo(f"report: {path}")


@click.command(name="systems")
def list_systems() -> None:
    """List the systems that can be trained, with their front end, back end and threshold."""
    from stethoscope.systems import get_system, system_names

    rows = [
        (
            name,
            (cfg := get_system(name)).frontend.name,
            cfg.backend.name,
            cfg.threshold.name,
            cfg.description,
        )
        for name in system_names()
    ]
    header = ("system", "front end", "back end", "threshold", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])


COMMANDS = [evaluate, report, list_systems]
