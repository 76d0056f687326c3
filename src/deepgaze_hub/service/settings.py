"""The service's limits and batching settings, as plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import DeepGazeError

#: Image formats the service decodes by default, as Pillow names them (detected from the bytes).
DEFAULT_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")


class ServiceConfigError(DeepGazeError, ValueError):
    """A service setting out of range; the message names the setting."""


@dataclass(frozen=True)
class ServiceSettings:
    """What the prediction service accepts and how it batches.

    Attributes:
        max_upload_bytes: largest request body (the encoded image), in bytes.
        max_pixels: largest image, width x height in pixels, checked from the image header
            before anything is decoded (decompression bombs never reach memory).
        image_formats: Pillow format names accepted, detected from the content, never from a
            file name or Content-Type header.
        request_timeout_s: a request still unanswered after this many seconds (reading the
            upload, waiting for the model, encoding the outputs) is answered 408.
        max_batch: at most this many images share one forward pass; 1 turns batching off.
        batch_wait_ms: how long the first request of a batch waits for others to join it.
        max_batch_pixels: a batch holds at most this many pixels in all (an image larger than
            this still runs, alone), bounding the memory of one forward pass.
        max_queue: predict requests served at once (uploading, queued, in the model, encoding);
            more get 429. Bounds the memory held by uploads and decoded images.
        max_fixations: most fixations one request may ask to sample.
        result_cache_bytes: recent results kept (image and log density, 7 bytes per pixel) so
            the page can redraw overlays and offer downloads without rerunning the model.
    """

    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 2048 * 2048
    image_formats: tuple[str, ...] = field(default=DEFAULT_IMAGE_FORMATS)
    request_timeout_s: float = 60.0
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    max_batch_pixels: int = 4 * 2**20
    max_queue: int = 32
    max_fixations: int = 1000
    result_cache_bytes: int = 256 * 2**20

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_formats", tuple(f.upper() for f in self.image_formats))
        positive = ("max_upload_bytes", "max_pixels", "max_batch", "max_batch_pixels", "max_queue")
        for name in positive:
            if getattr(self, name) < 1:
                raise ServiceConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.request_timeout_s <= 0:
            raise ServiceConfigError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        if self.batch_wait_ms < 0 or self.max_fixations < 0 or self.result_cache_bytes < 0:
            raise ServiceConfigError("batch_wait_ms, max_fixations and result_cache_bytes must be >= 0")
        if not self.image_formats:
            raise ServiceConfigError("image_formats is empty: accept at least one format")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_formats"] = list(self.image_formats)
        return data
