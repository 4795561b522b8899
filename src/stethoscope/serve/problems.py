"""A request the service refuses, as the HTTP status and JSON body a client receives."""

from __future__ import annotations


class RequestProblem(Exception):
    """Answered as ``{"detail": message, "field": field}`` with ``status``; ``kind`` labels the
    error in the service's metrics."""

    def __init__(self, status: int, detail: str, field: str | None = None, kind: str = "") -> None:
        self.status = status
        self.detail = detail
        self.field = field
        self.kind = kind or _KINDS.get(status, "bad_request")
        super().__init__(detail)

    def body(self) -> dict[str, str]:
        out = {"detail": self.detail}
        if self.field is not None:
            out["field"] = self.field
        return out


_KINDS = {
    404: "not_found",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
}
