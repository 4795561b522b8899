"""The HTTP service: a trained model scoring uploaded recordings (``stethoscope serve``).

The model is loaded once per process, before the first request: :func:`create_app` takes a
loaded :class:`~stethoscope.detector.Detector`, and :func:`app_from_env` is the factory each
uvicorn worker process calls (every worker then holds its own copy of the model). Uploads are read
into memory within the body limit and scored from there (:mod:`stethoscope.serve.uploads`); the
scoring itself runs on one thread per process (:mod:`stethoscope.serve.scorer`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from stethoscope import __version__
from stethoscope.audio import AudioError
from stethoscope.detector import Detector, Failure, Result, UnknownTarget
from stethoscope.serve.metrics import Metrics, MetricsMiddleware
from stethoscope.serve.problems import RequestProblem
from stethoscope.serve.schemas import (
    BatchResponse,
    BatchResult,
    ErrorBody,
    FileError,
    Health,
    ModelInfo,
    ScoreResult,
)
from stethoscope.serve.scorer import Scorer, Upload
from stethoscope.serve.settings import ServeSettings, load_detector
from stethoscope.serve.uploads import (
    MULTIPART,
    Form,
    Part,
    is_audio_type,
    media_type,
    parse_multipart,
    read_body,
    safe_name,
    unsupported_type,
)

log = logging.getLogger("stethoscope.serve")

#: most files in one batch request
MAX_BATCH_FILES = 256
ENDPOINTS = ["/v1/score", "/v1/score/batch", "/v1/model", "/health", "/metrics"]

MachineQ = Annotated[
    str | None,
    Query(description="machine type, as in GET /v1/model (default: the model's only one)"),
]
SectionQ = Annotated[
    str | None,
    Query(description="section, e.g. 00 or 0 (default: the machine type's only one)"),
]
DomainQ = Annotated[
    Literal["source", "target"] | None,
    Query(description="domain of the recording, recorded with the result (optional)"),
]
NameQ = Annotated[
    str | None,
    Query(description="a name for a raw-body recording in the result and in messages"),
]

_BINARY = {"type": "string", "format": "binary"}
_TARGET_FIELDS = {
    "machine": {"type": "string", "description": "machine type (or the query parameter)"},
    "section": {"type": "string", "description": "section (or the query parameter)"},
    "domain": {"type": "string", "enum": ["source", "target"]},
}
_SCORE_BODY = {
    "requestBody": {
        "required": True,
        "description": "one WAV or FLAC recording: the raw file as the body, or a multipart "
        "upload with the field `file` (machine, section and domain may then be form fields)",
        "content": {
            "audio/wav": {"schema": _BINARY},
            "audio/flac": {"schema": _BINARY},
            "application/octet-stream": {"schema": _BINARY},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": _BINARY, **_TARGET_FIELDS},
                }
            },
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "description": "a multipart upload of several recordings, each in a field `files`",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": _BINARY},
                        **_TARGET_FIELDS,
                    },
                }
            }
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "the model has no such machine type"},
    413: {"model": ErrorBody, "description": "the request body is over the limit"},
    415: {"model": ErrorBody, "description": "the body's media type is not audio"},
    422: {
        "model": ErrorBody,
        "description": "bad section or domain, or audio that cannot be scored "
        "(undecodable, empty, too short, a sample rate the service does not resample)",
    },
}


def create_app(detector: Detector, settings: ServeSettings) -> FastAPI:
    """The service for a loaded model (scoring starts on its own thread at once)."""
    metrics = Metrics(ENDPOINTS, detector.system, detector.model_id)
    scorer = Scorer(detector, settings.max_batch, settings.torch_threads())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        scorer.close()

    app = FastAPI(
        title="Stethoscope",
        version=__version__,
        summary="Anomalous sound detection: score machine recordings with a trained model",
        description=f"Serving model `{detector.model_id}` ({detector.system}). POST a WAV or "
        "FLAC recording to /v1/score; GET /v1/model lists the machine types and sections.",
        lifespan=lifespan,
    )
    app.state.detector = detector
    app.state.settings = settings
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _add_error_handlers(app, metrics)
    limit = settings.max_body_bytes

    def target(machine: str | None, section: str | None, domain: str | None) -> tuple[str, str]:
        """(machine, section) to score, or the problem that names the field (404 / 422)."""
        if machine is None:
            machines = detector.machines()
            if len(machines) != 1:
                raise RequestProblem(
                    422, f"give the machine type: this model has {', '.join(machines)}", "machine"
                )
            machine = machines[0]
        try:
            return machine, detector.resolve(machine, section, domain)
        except UnknownTarget as exc:
            raise RequestProblem(
                404 if exc.field == "machine" else 422, str(exc), exc.field
            ) from None

    def scored(result: Result, started: float) -> dict[str, Any]:
        metrics.scored(result.machine, result.section, result.decision, result.timings)
        out = result.to_dict()
        out["timings"] = {**result.timings, "server_ms": 1e3 * (time.perf_counter() - started)}
        return out

    @app.post(
        "/v1/score",
        summary="Score one recording",
        description="Anomaly score and decision for one WAV or FLAC recording, sent as the "
        "request body (Content-Type audio/wav, audio/flac or application/octet-stream) or as a "
        "multipart upload (field `file`). A recording at another sample rate is resampled, with "
        "a note, unless the service runs with --no-resample (then 422).",
        response_model=ScoreResult,
        responses=_ERRORS,
        openapi_extra=_SCORE_BODY,
        tags=["scoring"],
    )
    async def score(
        request: Request,
        machine: MachineQ = None,
        section: SectionQ = None,
        domain: DomainQ = None,
        name: NameQ = None,
    ) -> Any:
        started = time.perf_counter()
        header = request.headers.get("content-type")
        kind = media_type(header)
        wanted: tuple[str | None, str | None, str | None] = (machine, section, domain)
        if kind == MULTIPART:
            form = parse_multipart(await read_body(request, limit), header or "")
            wanted = _form_target(form, *wanted)
            part = _single_file(form)
            upload: Upload = (bytes(part.data), part.filename)
            where = "file"
            chosen = target(*wanted)
        elif is_audio_type(kind):
            chosen = target(*wanted)  # before reading the body: refuse early
            upload = (await read_body(request, limit), safe_name(name))
            where = "body"
        else:
            raise unsupported_type(kind, "a recording")
        try:
            result = await scorer.score(upload, *chosen, wanted[2])
        except AudioError as exc:
            raise RequestProblem(422, str(exc), where, "bad_audio") from None
        return scored(result, started)

    @app.post(
        "/v1/score/batch",
        summary="Score several recordings of one machine",
        description="A multipart upload of recordings (each in a field `files`) of one machine "
        "type and section. Every usable recording is scored; the others are listed in `errors` "
        f"by name with the reason. At most {MAX_BATCH_FILES} files.",
        response_model=BatchResponse,
        responses=_ERRORS,
        openapi_extra=_BATCH_BODY,
        tags=["scoring"],
    )
    async def score_batch(
        request: Request,
        machine: MachineQ = None,
        section: SectionQ = None,
        domain: DomainQ = None,
    ) -> Any:
        started = time.perf_counter()
        header = request.headers.get("content-type")
        if media_type(header) != MULTIPART:
            raise unsupported_type(media_type(header), "a batch (send multipart/form-data)")
        form = parse_multipart(await read_body(request, limit), header or "")
        wanted = _form_target(form, machine, section, domain)
        chosen = target(*wanted)
        parts = _batch_files(form)
        errors: list[FileError] = []
        index: list[int] = []
        uploads: list[Upload] = []
        for i, part in enumerate(parts):
            if is_audio_type(part.content_type):
                index.append(i)
                uploads.append((bytes(part.data), part.filename))
            else:
                errors.append(FileError(
                    index=i, file=part.filename,
                    detail=f"unsupported media type {part.content_type!r}: not a recording",
                ))  # fmt: skip
        results: list[BatchResult] = []
        outcomes = await scorer.score_many(uploads, *chosen, wanted[2]) if uploads else []
        for i, outcome in zip(index, outcomes, strict=True):
            if isinstance(outcome, Failure):
                errors.append(FileError(index=i, file=outcome.file, detail=outcome.reason))
            else:
                results.append(BatchResult(index=i, **scored(outcome, started)))
        for _ in errors:
            metrics.error(request.url.path, "bad_audio")
        errors.sort(key=lambda e: e.index)
        return BatchResponse(
            results=results, errors=errors, scored=len(results), failed=len(errors),
            server_ms=1e3 * (time.perf_counter() - started),
        )  # fmt: skip

    @app.get(
        "/health",
        summary="Liveness: the service is up, with the model it serves",
        response_model=Health,
        tags=["service"],
    )
    async def health() -> Any:
        return {"status": "ok", "system": detector.system, "model_id": detector.model_id}

    description = detector.describe()

    @app.get(
        "/v1/model",
        summary="The model: system, machine types, sections, thresholds, training data",
        response_model=ModelInfo,
        tags=["service"],
    )
    async def model() -> Any:
        return {**description, "max_body_bytes": limit, "workers": settings.workers}

    @app.get(
        "/metrics",
        summary="Prometheus metrics of this worker process",
        description="Requests by endpoint and status, errors by kind, latency histograms, "
        "recordings scored by machine type and decision (text exposition format).",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
        tags=["service"],
    )
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return app


def app_from_env() -> FastAPI:
    """The app of a uvicorn worker process: settings from the environment, model loaded now."""
    settings = ServeSettings.from_env()
    return create_app(load_detector(settings, fresh_process=True), settings)


def _form_target(
    form: Form, machine: str | None, section: str | None, domain: str | None
) -> tuple[str | None, str | None, str | None]:
    """Machine, section and domain: a multipart upload's form fields, else the query's."""
    return (
        form.fields.get("machine") or machine,
        form.fields.get("section") or section,
        form.fields.get("domain") or domain,
    )


def _single_file(form: Form) -> Part:
    files = [p for p in form.files if p.name == "file"]
    others = sorted({p.name for p in form.files if p.name != "file"})
    if others:
        raise RequestProblem(
            422, f"unexpected file field(s) {', '.join(others)}: send the recording as 'file'",
            others[0],
        )  # fmt: skip
    if not files:
        raise RequestProblem(
            422, "the multipart upload has no recording in the field 'file'", "file"
        )
    if len(files) > 1:
        raise RequestProblem(
            422, "one recording per request: send several to /v1/score/batch as 'files'", "file"
        )
    if not is_audio_type(files[0].content_type):
        raise unsupported_type(files[0].content_type, f"the file {files[0].filename!r}")
    return files[0]


def _batch_files(form: Form) -> list[Part]:
    others = sorted({p.name for p in form.files if p.name != "files"})
    if others:
        raise RequestProblem(
            422, f"unexpected file field(s) {', '.join(others)}: send the recordings as 'files'",
            others[0],
        )  # fmt: skip
    if not form.files:
        raise RequestProblem(422, "the multipart upload has no recordings in 'files'", "files")
    if len(form.files) > MAX_BATCH_FILES:
        raise RequestProblem(
            413, f"{len(form.files)} files: at most {MAX_BATCH_FILES} per batch", "files"
        )
    return form.files


def _add_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Every refusal as ``{"detail": ..., "field": ...}``, counted by kind."""

    def answer(request: Request, status: int, body: dict[str, Any], kind: str) -> JSONResponse:
        metrics.error(request.url.path, kind)
        return JSONResponse(body, status_code=status)

    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestProblem)
        return answer(request, exc.status, exc.body(), exc.kind)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("query", "body")]
        field = loc[-1] if loc else None
        given = first.get("input")
        detail = f"{field or 'request'}: {first.get('msg', 'invalid')}"
        if isinstance(given, str):
            detail += f", not {given!r}"
        body = {"detail": detail} if field is None else {"detail": detail, "field": field}
        return answer(request, 422, body, "invalid_parameter")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        metrics.error(request.url.path, kind)
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    async def crash(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s", request.url.path, exc_info=exc)
        return answer(
            request, 500, {"detail": f"internal error ({type(exc).__name__}): see the log"},
            "internal",
        )  # fmt: skip

    app.add_exception_handler(RequestProblem, problem)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, crash)
