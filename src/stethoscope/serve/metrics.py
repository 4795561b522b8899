"""Prometheus metrics of one service: requests, errors, latency, and what was scored.

Each app has its own registry (not prometheus-client's global one), so several apps in one
process, as in tests, count separately. With several uvicorn workers each worker process counts
its own requests: a scrape of ``/metrics`` shows the worker that answered it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: seconds; scoring a 10 s clip takes milliseconds, a batch or a loaded machine longer
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
STAGES = ("queue", "decode", "features", "model")


class Metrics:
    """The service's counters and histograms, in a registry of their own."""

    def __init__(self, endpoints: list[str], system: str, model_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.endpoints = frozenset(endpoints)
        self.requests = Counter(
            "stethoscope_http_requests",
            "HTTP requests answered, by endpoint, method and status code",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "stethoscope_http_errors",
            "requests refused or failed, by endpoint and kind of error",
            ["endpoint", "kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stethoscope_http_request_duration_seconds",
            "time from the start of a request to the end of its response, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.recordings = Counter(
            "stethoscope_recordings_scored",
            "recordings scored, by machine type, section and decision",
            ["machine", "section", "decision"],
            registry=self.registry,
        )
        self.stages = Histogram(
            "stethoscope_scoring_stage_seconds",
            "time per recording in each stage of scoring (queue: waiting for the scorer)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        info = Gauge(
            "stethoscope_model_info",
            "the model this service scores with (always 1)",
            ["system", "model_id"],
            registry=self.registry,
        )
        info.labels(system=system, model_id=model_id).set(1)

    def endpoint(self, path: str) -> str:
        """A known route's path, or "other": a client cannot grow the label set."""
        return path if path in self.endpoints else "other"

    def error(self, path: str, kind: str) -> None:
        self.errors.labels(endpoint=self.endpoint(path), kind=kind).inc()

    def scored(self, machine: str, section: str, decision: int, timings: dict[str, float]) -> None:
        self.recordings.labels(
            machine=machine, section=section, decision="anomalous" if decision else "normal"
        ).inc()
        for stage in STAGES:
            if f"{stage}_ms" in timings:
                self.stages.labels(stage=stage).observe(timings[f"{stage}_ms"] / 1e3)

    def exposition(self) -> tuple[bytes, str]:
        """The text a Prometheus scrape receives, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts every HTTP request by endpoint and status, and times it (plain ASGI: no copy of
    the body, unlike Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        endpoint = self.metrics.endpoint(scope["path"])
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(
                endpoint=endpoint, method=scope["method"], status=str(status)
            ).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - started)
