"""The HTTP service: a saved model scoring recordings posted to it (`stethoscope serve`)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

import click

from stethoscope.cli.options import CHANNEL_CHOICE, CHANNEL_HELP, DATA_ROOT, DEVICE
from stethoscope.serve.settings import DEFAULT_HOST, DEFAULT_MAX_BODY_MB, DEFAULT_PORT


@click.command()
@click.option("--model", "model_dir", type=DATA_ROOT, required=True, help="a saved model folder")
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="address to listen on (the service has no authentication: keep it local or behind a "
    "proxy that has)",
)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="worker processes; each loads its own copy of the model (memory x N)",
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(0.001, 4096),
    default=DEFAULT_MAX_BODY_MB,
    show_default=True,
    help="largest request body accepted, in MiB (413 beyond); uploads are held in memory",
)
@click.option(
    "--resample/--no-resample",
    default=True,
    show_default=True,
    help="resample recordings at another sample rate (noted in the answer), or refuse them (422)",
)
@click.option(
    "--channel", type=CHANNEL_CHOICE, default=None, help=CHANNEL_HELP + " [default: the model's]"
)
@click.option(
    "--force-channel",
    is_flag=True,
    help="score on --channel though the model was trained on another",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=None,
    help="torch threads per worker [default: half the cores divided among the workers]",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="most queued single-recording requests scored together (1: one at a time)",
)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@DEVICE
@click.pass_context
def serve(
    ctx: click.Context,
    model_dir: Path,
    host: str,
    port: int,
    workers: int,
    max_body_mb: float,
    resample: bool,
    channel: str | None,
    force_channel: bool,
    threads: int | None,
    max_batch: int,
    access_log: bool,
    device: str,
) -> None:
    """Serve a saved model over HTTP: POST a recording to /v1/score, get its score and decision.

    \b
      stethoscope serve --model MODEL --port 8000
      curl --data-binary @clip.wav -H 'Content-Type: audio/wav' \\
           'http://127.0.0.1:8000/v1/score?machine=fan'
    The API is described at /docs; /v1/model lists the machine types and sections, /health and
    /metrics (Prometheus) watch the service. The model is loaded once per worker process.
    """
    from stethoscope.serve import INSTALL_HINT, missing_dependencies

    missing = missing_dependencies()
    if missing:
        raise click.ClickException(f"the service needs {', '.join(missing)}: {INSTALL_HINT}")
    import uvicorn

    from stethoscope.serve.settings import ENV_VAR, ServeSettings, describe, load_detector

    settings = ServeSettings(
        model_dir=str(model_dir.resolve()), host=host, port=port, workers=workers,
        max_body_bytes=int(max_body_mb * 1024 * 1024), resample=resample, channel=channel,
        force_channel=force_channel, device=device, threads=threads, max_batch=max_batch,
        plugins=tuple(ctx.find_root().params.get("plugins") or ()),
    )  # fmt: skip
    # loaded here even for several workers: a bad folder stops here, in one line, instead of
    # uvicorn restarting workers that fail over and over
    detector = load_detector(settings)
    click.echo(describe(detector))
    app: Any
    if workers == 1:
        from stethoscope.serve.app import create_app

        app = create_app(detector, settings)
    else:
        del detector  # each worker loads its own
        os.environ[ENV_VAR] = settings.to_env()
        app = "stethoscope.serve.app:app_from_env"
    if not _is_loopback(host):
        click.echo(f"warning: listening on {host}: the service has no authentication", err=True)
    click.echo(
        f"serving on http://{host}:{port} (API at /docs), {workers} worker process(es), "
        f"each with its own copy of the model; body limit {max_body_mb:g} MiB"
    )
    uvicorn.run(
        app, host=host, port=port, access_log=access_log, log_level="info",
        factory=workers > 1, workers=workers,
    )  # fmt: skip


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


COMMANDS = [serve]
