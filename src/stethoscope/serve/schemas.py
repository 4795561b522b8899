"""The JSON the service answers with, as pydantic models: they document ``/openapi.json``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Timings(BaseModel):
    """Milliseconds per recording; for recordings scored together, their share of the batch."""

    decode_ms: float = Field(description="reading the audio (decoding, channel, resampling)")
    features_ms: float = Field(description="computing the model's features")
    model_ms: float = Field(description="the network and the back end")
    total_ms: float = Field(description="decode + features + model")
    queue_ms: float = Field(0.0, description="waiting for the scorer, busy with other requests")
    server_ms: float = Field(
        0.0, description="the whole request on the server: reading the body to the answer"
    )


class ScoreResult(BaseModel):
    """One recording's anomaly score and decision, with the model that gave them."""

    file: str = Field(description="the upload's file name (or the `name` parameter)")
    machine: str
    section: str
    domain: Literal["source", "target"] | None = None
    score: float = Field(description="anomaly score: higher is more anomalous")
    decision: int = Field(description="1: anomalous (score above the threshold), 0: normal")
    threshold: float = Field(description="the section's decision threshold")
    system: str = Field(description="the system that scored it (e.g. ae-mse)")
    model_id: str = Field(description="hash of the model folder's files: same id, same model")
    notes: list[str] = Field(
        default_factory=list,
        description="what reading the audio did or noticed (resampled, channels, silent)",
    )
    timings: Timings


class BatchResult(ScoreResult):
    index: int = Field(description="position of the file in the upload, from 0")


class FileError(BaseModel):
    """A recording of a batch that could not be scored."""

    index: int = Field(description="position of the file in the upload, from 0")
    file: str
    detail: str = Field(description="why it could not be scored")


class BatchResponse(BaseModel):
    """Every usable recording scored; the others listed with the reason."""

    results: list[BatchResult]
    errors: list[FileError]
    scored: int
    failed: int
    server_ms: float = Field(description="the whole request on the server")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    system: str
    model_id: str


class SectionInfo(BaseModel):
    threshold: float


class ModelInfo(BaseModel):
    """What the served model scores, and how it was trained."""

    system: str
    model_id: str
    runtime: str
    machines: dict[str, dict[str, SectionInfo]] = Field(
        description="machine type -> section -> its decision threshold"
    )
    channels: list[str] = Field(description="what the model hears of multi-channel recordings")
    sample_rate: int = Field(description="the sample rate the model's features take")
    resample: bool = Field(description="whether other sample rates are resampled (or refused)")
    trained_on: str = Field(description="a summary of the training data")
    max_body_bytes: int = Field(description="the largest request body this service accepts")
    workers: int = Field(description="worker processes, each holding a copy of the model")


class ErrorBody(BaseModel):
    """A refused request: what was wrong, and which field when one applies."""

    detail: str
    field: str | None = None
