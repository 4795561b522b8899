"""Request bodies: read within the size limit and kept in memory, never written to disk.

The body is counted as it arrives, so a client that sends more than the limit (with or without a
Content-Length) is stopped at the limit instead of filling memory. Multipart uploads are parsed
here with python-multipart into memory rather than by Starlette, whose parser moves a file over
1 MiB to a temporary file on disk. A client's file name is only ever a label in messages and
results, never a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from stethoscope.serve.problems import RequestProblem

#: media types of a raw body that may hold a recording (decoding decides whether it does)
RAW_TYPES = ("audio/", "application/octet-stream")
MULTIPART = "multipart/form-data"
#: a multipart upload's text fields (machine, section, domain) are short
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 1000
MAX_NAME = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Part:
    """One file of a multipart upload, held in memory."""

    #: the form field it came in (``file``, ``files``)
    name: str
    filename: str
    content_type: str
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Form:
    """A multipart upload: its text fields and its files, in the order sent."""

    fields: dict[str, str] = field(default_factory=dict)
    files: list[Part] = field(default_factory=list)


def media_type(header: str | None) -> str:
    """``"Audio/WAV; rate=16000"`` -> ``"audio/wav"``; no header -> ``""``."""
    return (header or "").split(";", 1)[0].strip().lower()


def is_audio_type(kind: str) -> bool:
    """Whether a body or part of this media type may be a recording ("" : not said)."""
    return kind == "" or kind.startswith(RAW_TYPES)


def unsupported_type(kind: str, where: str) -> RequestProblem:
    return RequestProblem(
        415,
        f"unsupported media type {kind!r} for {where}: send a WAV or FLAC recording as "
        f"audio/wav, audio/flac or application/octet-stream, or as a multipart/form-data upload",
        "content-type",
    )


def safe_name(filename: str | None, default: str = "<upload>") -> str:
    """A client's file name as a label: its last path component, printable, at most 200 chars."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = _UNSAFE.sub("", name).strip()[:MAX_NAME]
    return name if name and name not in (".", "..") else default


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as its declared or received size passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestProblem(
                400, f"bad Content-Length {declared!r}", "content-length"
            ) from None
        if size > limit:
            raise _too_large(limit, f"{size:,} bytes declared")
    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > limit:
                raise _too_large(limit, "more was sent")
            body += chunk
    except ClientDisconnect:
        raise RequestProblem(400, "the client disconnected before the end of the body") from None
    return bytes(body)


def _too_large(limit: int, what: str) -> RequestProblem:
    return RequestProblem(
        413,
        f"request body too large: at most {limit:,} bytes ({limit / 2**20:.3g} MiB) are "
        f"accepted, {what}",
        "body",
    )


def parse_multipart(body: bytes, content_type: str) -> Form:
    """A multipart/form-data body's fields and files, in memory (422 when malformed)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise RequestProblem(422, "multipart upload without a boundary", "content-type")
    collector = _Collector()
    parser = MultipartParser(boundary, collector.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise RequestProblem(422, f"malformed multipart upload ({exc})", "body") from None
    except _FormError as exc:
        raise RequestProblem(422, str(exc), "body") from None
    return collector.form


class _FormError(Exception):
    pass


class _Collector:
    """python-multipart's callbacks, gathering each part into memory."""

    def __init__(self) -> None:
        self.form = Form()
        self._headers: dict[bytes, bytes] = {}
        self._name = b""
        self._value = b""
        self._part: Part | None = None
        self._text = bytearray()
        self._field = ""
        self._parts = 0

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise _FormError(f"more than {MAX_PARTS} parts in the multipart upload")
        self._headers = {}
        self._part = None
        self._text = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._name.strip().lower()] = self._value.strip()
        self._name = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise _FormError("a multipart part has no name (Content-Disposition: form-data)")
        self._field = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            self._part = Part(
                self._field,
                safe_name(options[b"filename"].decode("utf-8", "replace")),
                media_type(self._headers.get(b"content-type", b"").decode("latin-1")),
            )

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part is not None:
            self._part.data += data[start:end]
            return
        self._text += data[start:end]
        if len(self._text) > MAX_FIELD_BYTES:
            raise _FormError(f"form field {self._field!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _end(self) -> None:
        if self._part is not None:
            self.form.files.append(self._part)
        else:
            self.form.fields[self._field] = self._text.decode("utf-8", "replace").strip()
