"""Telling someone: an alert printed, appended to a log file, or POSTed as JSON to a webhook.

A sink that fails (a full disk, a webhook that is down) is logged and the monitor goes on: the
alert is in the database either way, and a monitor that stopped watching over a failed
notification would be worse than one that missed a notification.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any, Protocol

from stethoscope.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """An alert as sinks see it."""

    id: int
    raised_at: str
    machine: str
    section: str
    model_id: str
    rule: str
    #: the recording on which the rule went from quiet to alerting
    file: str
    value: float
    threshold: float
    message: str
    #: the folder watched
    watch: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "stethoscope.alert", **asdict(self)}

    def line(self) -> str:
        return f"{self.raised_at} ALERT [{self.rule}] {self.message} (model {self.model_id})"


class AlertSink(Protocol):
    def send(self, alert: Alert) -> bool:
        """Deliver ``alert``; False (and a logged warning) when it could not be."""
        ...


class StdoutSink:
    def __init__(self, echo: Callable[[str], None] = print) -> None:
        self._echo = echo

    def send(self, alert: Alert) -> bool:
        self._echo(alert.line())
        return True


class LogFileSink:
    """One line per alert, appended (the file is opened per alert, so log rotation just works)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigError(f"--alert-log {self.path} is a folder, not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def send(self, alert: Alert) -> bool:
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(alert.line() + "\n")
        except OSError as exc:
            log.warning("alert log %s: could not write alert %s (%s)", self.path, alert.id, exc)
            return False
        return True


class WebhookSink:
    """HTTP POST of the alert as JSON; ``timeout`` bounds how long the monitor waits for it."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--webhook must be an http:// or https:// URL, not {url!r}")
        self.url = url
        self.timeout = float(timeout)

    def send(self, alert: Alert) -> bool:
        body = json.dumps(alert.to_dict()).encode("utf-8")
        req = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "stethoscope-monitor"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read(1 << 16)
        except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            log.warning("webhook %s: could not post alert %s (%s)", self.url, alert.id, reason)
            return False
        return True
