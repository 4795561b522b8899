"""Condition monitoring: score recordings as they land in a folder, keep every result, raise alerts.

The pieces, one concept per module: :mod:`~stethoscope.monitor.watch` finds new recordings that
are complete, :mod:`~stethoscope.monitor.rules` decides when a machine needs attention (k of the
last n clips above the threshold, or the DtMM mixture drifting from its baseline),
:mod:`~stethoscope.monitor.sinks` tells someone, :mod:`~stethoscope.monitor.store` keeps results,
alerts and the rule's state in one SQLite file, :mod:`~stethoscope.monitor.runner` is the loop and
:mod:`~stethoscope.monitor.report` draws the timeline.
"""

from __future__ import annotations

from stethoscope.monitor.rules import AlertRule, KOfN, MixtureEvolution, RuleStep, choose_rule
from stethoscope.monitor.runner import MonitorRunner, PollSummary
from stethoscope.monitor.sinks import Alert, LogFileSink, StdoutSink, WebhookSink
from stethoscope.monitor.store import MonitorStore, Recording, StreamState
from stethoscope.monitor.watch import FileVersion, Watcher

__all__ = [
    "Alert",
    "AlertRule",
    "FileVersion",
    "KOfN",
    "LogFileSink",
    "MixtureEvolution",
    "MonitorRunner",
    "MonitorStore",
    "PollSummary",
    "Recording",
    "RuleStep",
    "StdoutSink",
    "StreamState",
    "Watcher",
    "WebhookSink",
    "choose_rule",
]
