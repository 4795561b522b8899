"""Monitoring command: watch a folder of recordings over time, or draw what a monitor recorded."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import click

from stethoscope.cli.options import DATA_ROOT, DEVICE
from stethoscope.errors import ConfigError


def default_db(watch: Path) -> Path:
    """``<folder>.monitor.sqlite`` beside the watched folder: found next to it, never scanned as
    audio, and the folder itself may be a read-only share."""
    folder = watch.resolve()
    if folder.parent == folder:  # the file system root
        return Path.cwd() / "stethoscope-monitor.sqlite"
    return folder.parent / f"{folder.name}.monitor.sqlite"


@click.command()
@click.option("--model", "model_dir", type=DATA_ROOT, default=None, help="a saved model folder")
@click.option("--machine", default=None, help="the machine type the recordings are of")
@click.option("--section", default=None, help="the model's section (default: the only one)")
@click.option(
    "--watch",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="the folder recordings (.wav, .flac) land in, searched recursively",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the SQLite file of results, alerts and state [default: FOLDER.monitor.sqlite beside "
    "the watched folder]",
)
@click.option(
    "--rule",
    type=click.Choice(["auto", "k-of-n", "dtmm"]),
    default="auto",
    show_default=True,
    help="auto: mixture evolution (dtmm) for CNN-DtMM models, k-of-n for the others",
)
@click.option("--k", type=click.IntRange(min=1), default=3, show_default=True,
              help="k-of-n: alert when k ...")  # fmt: skip
@click.option("--n", type=click.IntRange(min=1), default=5, show_default=True,
              help="... of the last n clips are above the threshold")  # fmt: skip
@click.option(
    "--forgetting",
    type=click.FloatRange(0.0, 1.0),
    default=1.0,
    show_default=True,
    help="dtmm: how much of the evolved state each clip carries over (0: none, each clip alone)",
)
@click.option(
    "--calibrate",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="dtmm: a folder of this machine's normal recordings; the alert threshold becomes "
    "mu + k sigma of the KL over the mixture evolved through them (in name order), in place of "
    "the back end's single-clip threshold, which a long normal stream exceeds",
)
@click.option("--poll", type=click.FloatRange(min=0.05), default=5.0, show_default=True,
              help="seconds between looks at the folder")  # fmt: skip
@click.option(
    "--settle",
    type=click.FloatRange(min=0.0),
    default=2.0,
    show_default=True,
    help="seconds a file must stay unchanged before it is read",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--max-per-poll",
    type=click.IntRange(min=0),
    default=0,
    help="score at most this many files per poll, the rest later [default: no limit]",
)
@click.option("--alert-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="append one line per alert to this file")  # fmt: skip
@click.option("--webhook", default=None, help="POST each alert as JSON to this http(s) URL")
@click.option("--webhook-timeout", type=click.FloatRange(min=0.1), default=5.0,
              show_default=True, help="seconds to wait for the webhook")  # fmt: skip
@click.option("--once", is_flag=True, help="score what is there now, then exit (cron, tests)")
@click.option("--report", "report_mode", is_flag=True,
              help="write the HTML page of --db instead of monitoring")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="with --report: the page [default: the database's name with .html]")  # fmt: skip
@DEVICE
def monitor(
    model_dir: Path | None,
    machine: str | None,
    section: str | None,
    watch: Path | None,
    db: Path | None,
    rule: str,
    k: int,
    n: int,
    forgetting: float,
    calibrate: Path | None,
    poll: float,
    settle: float,
    batch_size: int,
    max_per_poll: int,
    alert_log: Path | None,
    webhook: str | None,
    webhook_timeout: float,
    once: bool,
    report_mode: bool,
    out: Path | None,
    device: str,
) -> None:
    """Watch a machine over time: score each new recording in a folder as it appears.

    Every result, alert and the alert rule's state go to one SQLite file, so a monitor that is
    stopped (or killed) and started again scores nothing twice and its rule continues. Alerts (a
    rule going from quiet to alerting) are printed, and appended to --alert-log or POSTed to
    --webhook when given.

    \b
      stethoscope monitor --model MODEL --machine pump --watch /data/pump --alert-log alerts.log
      stethoscope monitor --report --db /data/pump.monitor.sqlite --out pump.html
    """
    if report_mode:
        _report(db, out)
        return
    missing = [o for o, v in (("--model", model_dir), ("--machine", machine), ("--watch", watch))
               if v is None]  # fmt: skip
    if missing:
        raise click.UsageError(f"{', '.join(missing)} needed (or --report --db FILE)")
    if k > n:
        raise click.UsageError(f"--k {k} is more than --n {n}")
    assert model_dir is not None and machine is not None and watch is not None
    _watch(
        model_dir, machine, section, watch, db or default_db(watch), rule, k, n, forgetting,
        dict(poll=poll, settle=settle, batch_size=batch_size, max_per_poll=max_per_poll,
             once=once, device=device, calibrate=calibrate),
        alert_log, webhook, webhook_timeout,
    )  # fmt: skip


def _report(db: Path | None, out: Path | None) -> None:
    from stethoscope.monitor.report import write_report

    if db is None:
        raise click.UsageError("--report needs --db FILE")
    path = write_report(db, out if out is not None else db.with_suffix(".html"))
    click.echo(f"report: {path}")


def _watch(
    model_dir: Path,
    machine: str,
    section: str | None,
    watch: Path,
    db: Path,
    rule_kind: str,
    k: int,
    n: int,
    forgetting: float,
    loop: dict[str, Any],
    alert_log: Path | None,
    webhook: str | None,
    webhook_timeout: float,
) -> None:
    from stethoscope.detector import Detector
    from stethoscope.monitor.rules import choose_rule
    from stethoscope.monitor.runner import MonitorRunner
    from stethoscope.monitor.sinks import AlertSink, LogFileSink, StdoutSink, WebhookSink
    from stethoscope.monitor.store import MonitorStore, exclusive
    from stethoscope.monitor.watch import Watcher

    sinks: list[AlertSink] = [StdoutSink(click.echo)]
    if alert_log is not None:
        sinks.append(LogFileSink(alert_log))
    if webhook is not None:
        sinks.append(WebhookSink(webhook, webhook_timeout))
    detector = Detector.load(model_dir, device=loop["device"])
    section = detector.resolve(machine, section)  # an unknown machine or section: a clear error
    rule = choose_rule(detector, machine, section, rule_kind, k, n, forgetting)
    if loop["calibrate"] is not None:
        _calibrate(detector, machine, section, rule, loop["calibrate"])
    elif rule.name == "dtmm":
        click.echo(
            "note: the dtmm rule starts from the back end's single-clip threshold, which the "
            "evolved state of a long normal stream exceeds; --calibrate NORMAL_FOLDER sets one "
            "for the stream (a threshold calibrated earlier is kept with the stream)"
        )
    with exclusive(db):
        store = MonitorStore(db)
        try:
            runner = MonitorRunner(
                detector, store, Watcher(watch, settle=loop["settle"]), machine, section,
                rule=rule, sinks=sinks, batch_size=loop["batch_size"],
                max_per_poll=loop["max_per_poll"], echo=click.echo,
            )  # fmt: skip
            click.echo(
                f"model {detector.system} ({detector.model_id}); results in {db}\n" + runner.start()
            )
            stop = threading.Event()
            with _stop_on_signals(stop):
                total = runner.run(once=loop["once"], poll=loop["poll"], stop=stop)
        finally:
            store.close()
    click.echo(("stopped: " if not loop["once"] else "") + total.line())


def _calibrate(detector: Any, machine: str, section: str, rule: Any, folder: Path) -> None:
    """Set the dtmm rule's threshold from a normal stream of this machine (see --calibrate)."""
    from stethoscope.detector import find_recordings
    from stethoscope.monitor.rules import MixtureEvolution

    if not isinstance(rule, MixtureEvolution):
        raise click.UsageError(f"--calibrate applies to the dtmm rule, not {rule.name}")
    paths, bad = find_recordings([folder])
    views: dict[str, Any] = {}
    results, failed = detector.score_many(
        [str(p) for p in paths], machine, section, names=[str(p) for p in paths], keep_inputs=views
    )
    for f in [*bad, *failed]:
        click.echo(f"calibration: skipped {f.file}: {f.reason}", err=True)
    before = rule.threshold
    try:
        after = rule.calibrate([views[r.file] for r in results])
    except ConfigError as exc:
        raise click.UsageError(f"--calibrate {folder}: {exc}") from exc
    click.echo(
        f"calibrated the dtmm threshold on {len(results)} normal recordings in {folder}: "
        f"{after:.4g} (the back end's single-clip threshold: {before:.4g})"
    )


class _stop_on_signals:
    """SIGINT / SIGTERM finish the current clip and stop (a kill -9 is safe too, just abrupt)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._old: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, lambda *_: self.stop.set())

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


COMMANDS = [monitor]
