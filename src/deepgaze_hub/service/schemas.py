"""The JSON documents of the HTTP API (they also make its OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class LogDensityPayload(BaseModel):
    """A float32 (H, W) ``.npy`` file, base64-encoded: ``np.load(io.BytesIO(b64decode(data)))``."""

    encoding: str = Field("npy+base64", description="always npy+base64")
    dtype: str = Field("float32")
    shape: list[int] = Field(description="[H, W], rows then columns")
    units: str = Field("nats", description="natural-log density per pixel; exp sums to 1 over the image")
    data: str = Field(description="base64 of the .npy file's bytes")


class SampledFixations(BaseModel):
    """Fixations drawn independently from the density; x = column, y = row, in pixels."""

    x: list[float] = Field(description="columns, in pixels of the upload (its own size)")
    y: list[float] = Field(description="rows, in pixels of the upload")
    seed: int = Field(description="the seed that reproduces these fixations")


class Links(BaseModel):
    """Where this prediction's outputs can be fetched again while the service keeps it."""

    overlay: str
    log_density: str


class ScalingInfo(BaseModel):
    """How the upload was scaled for the model (sizes are [width, height] in pixels)."""

    original_size: list[int] = Field(description="[W, H] of the upload (EXIF orientation applied)")
    working_size: list[int] = Field(description="[w, h] the model predicted at")
    factor: float = Field(description="working / original")
    reason: str = Field(description="why: as is, shrunk to the model's working size, rescaled to its training scale, full size")
    text: str = Field(description="the same in one sentence")


class PredictResponse(BaseModel):
    id: str = Field(description="identifies the prediction in /v1/predictions/{id}/...")
    model: str = Field(description="the model that answered")
    width: int = Field(description="image width W in pixels (EXIF orientation applied); the log density is W wide")
    height: int = Field(description="image height H in pixels")
    image_format: str = Field(description="format detected from the content, e.g. JPEG")
    scaling: ScalingInfo = Field(description="how the image was scaled for the model; the overlay is at working_size")
    log_density: LogDensityPayload | None = None
    overlay_png: str | None = Field(None, description="base64 PNG: heatmap overlay with probability-mass contours")
    fixations: SampledFixations | None = None
    links: Links | None = Field(None, description="absent when the result was too large to keep")


class ModelInfo(BaseModel):
    name: str = Field(
        description="the name the service was started with (a local directory: its last component, "
        "unless the service shows model paths)"
    )
    num_members: int
    parameters: int = Field(description="trainable readout/finalizer parameters (the backbone is frozen)")
    device: str
    config: dict[str, Any] = Field(description="the model's DeepGazeConfig")
    card: str = Field(description="the model card (the README.md that save_pretrained writes)")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    limits: dict[str, Any] = Field(description="the service's limits and batching settings")


class Health(BaseModel):
    status: str
    in_flight: int = Field(description="fully received predict requests being served (queued, in the model, encoding)")
    uploading: int = Field(description="predict requests whose upload is being received")
    batches: int = Field(description="forward passes run since start")
    images: int = Field(description="images predicted since start")
    largest_batch: int


class ErrorDetail(BaseModel):
    status: int
    code: str = Field(description="stable identifier, e.g. upload_too_large")
    message: str = Field(description="what was wrong and what to do")


class ErrorResponse(BaseModel):
    error: ErrorDetail
