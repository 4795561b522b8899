"""Export command: a model folder as ONNX networks + back-end state, scored without torch."""

from __future__ import annotations

from pathlib import Path

import click

from stethoscope.cli.options import DATA_ROOT


@click.command()
@click.option("--model", "model_dir", type=DATA_ROOT, required=True, help="a model folder")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx"]),
    default="onnx",
    show_default=True,
    help="what the networks are written as",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="the export folder (new or empty, or an earlier export, which is replaced)",
)
def export(model_dir: Path, fmt: str, out: Path) -> None:
    """Export a trained model for scoring without torch.

    \b
      stethoscope export --model MODEL --format onnx --out MODEL_ONNX
      stethoscope score --runtime onnx --model MODEL_ONNX rec.wav --machine pump --out scores.csv
    The export needs torch and onnx; scoring it needs numpy, soundfile, onnxruntime and
    safetensors only.
    """
    try:
        from stethoscope.export.writer import export_model
    except ImportError as exc:  # onnx / onnxruntime are an extra
        raise click.ClickException(
            f"exporting needs the 'onnx' extra ({exc.name} is not installed): "
            "pip install 'stethoscope[onnx]'"
        ) from exc
    manifest = export_model(model_dir, out)
    members = manifest.get("members")
    what = f"fusion of {', '.join(members)}" if members else manifest["frontend"]["name"]
    click.echo(
        f"exported {manifest['system']} ({what}; model {manifest['source_model_id']}) to {out}"
    )


COMMANDS = [export]
