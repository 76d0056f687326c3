"""Checking an upload before it costs anything: who uploads, body size, image type, pixel count.

Every check raises `RequestRefused` with the 4xx status the client should see:

* 429: more uploads being received at once than ``max_uploads`` (all clients) or
  ``max_uploads_per_client`` (from one client address) allow (`UploadSlots`); 408: the body
  did not arrive within ``upload_timeout_s``. Uploads in progress do not count against the
  model's queue (``max_queue``): a slow or stalled client cannot lock others out;

* 413: the body is larger than ``max_upload_bytes`` (refused from the Content-Length header
  before reading, or as soon as the streamed body passes the limit), or the image header
  declares more than ``max_pixels`` pixels (refused before decoding: decompression bombs).
  ``max_pixels`` is about memory (phone photos of 12-50 Mpx pass): the model never sees that
  size, `prepare_upload` shrinks the image to the model's working size first;
* 415: the bytes are not an image in one of ``image_formats`` (only those decoders ever look
  at the bytes; the file name and Content-Type are ignored), or the body is a multipart form;
* 400: an empty body or a malformed Content-Length; 422: a corrupt, truncated or too small image.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import warnings
from collections.abc import AsyncIterator, Callable, Iterator

import torch
from PIL import Image, UnidentifiedImageError

from ..errors import ImageError
from ..io.images import check_pixels, load_image
from ..io.scale import Scaling, resize_image
from .errors import RequestRefused
from .settings import ServiceSettings

UPLOAD_NAME = "the uploaded image"


class UploadSlots:
    """Uploads being received: at most ``total`` at once, at most ``per_client`` from one address.

    Event-loop only (not thread-safe). `hold` refuses (429) when either limit is reached.
    """

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.active = 0
        self._by_client: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def hold(self, client: str) -> Iterator[None]:
        if self._by_client[client] >= self.per_client:
            raise RequestRefused(
                429,
                "too_many_uploads",
                f"this client already has {self._by_client[client]} uploads in progress (limit "
                f"{self.per_client}); wait for them to finish",
                headers={"Retry-After": "1"},
            )
        if self.active >= self.total:
            raise RequestRefused(
                429,
                "busy",
                f"the service is receiving {self.active} uploads (limit {self.total}); retry shortly",
                headers={"Retry-After": "1"},
            )
        self.active += 1
        self._by_client[client] += 1
        try:
            yield
        finally:
            self.active -= 1
            self._by_client[client] -= 1
            if not self._by_client[client]:
                del self._by_client[client]


async def receive_upload(
    chunks: AsyncIterator[bytes], content_length: str | None, settings: ServiceSettings, timeout_s: float
) -> bytes:
    """The body (see `read_body`), refused (408) unless it has fully arrived within ``timeout_s``."""
    try:
        return await asyncio.wait_for(read_body(chunks, content_length, settings.max_upload_bytes), timeout_s)
    except asyncio.TimeoutError:
        raise RequestRefused(
            408,
            "upload_timeout",
            f"the upload did not arrive within {timeout_s:g} s; send it again over a faster connection, "
            "or a smaller image",
        ) from None


async def read_body(chunks: AsyncIterator[bytes], content_length: str | None, max_bytes: int) -> bytes:
    """The whole request body, refusing (413) as soon as it is known to exceed ``max_bytes``."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise RequestRefused(
                400, "bad_content_length", f"Content-Length {content_length!r} is not a number"
            ) from None
        if declared > max_bytes:
            raise RequestRefused(413, "upload_too_large", _too_large(declared, max_bytes))
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise RequestRefused(413, "upload_too_large", _too_large(size, max_bytes, at_least=True))
        parts.append(chunk)
    return b"".join(parts)


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    more = "at least " if at_least else ""
    return (
        f"the upload is {more}{size} bytes, more than this service's limit of {limit} bytes "
        f"({limit / 2**20:.1f} MiB); send a smaller or more compressed image"
    )


def refuse_multipart(content_type: str | None) -> None:
    """Refuse multipart forms (415) with a hint: the body must be the image file itself."""
    if content_type and content_type.lower().startswith("multipart/"):
        raise RequestRefused(
            415,
            "multipart_not_accepted",
            "send the image file itself as the request body (curl --data-binary @photo.jpg, "
            "requests.post(url, data=open('photo.jpg', 'rb'))), not a multipart form (curl -F)",
        )


def decode_upload(data: bytes, settings: ServiceSettings) -> tuple[torch.Tensor, str]:
    """Decode an uploaded image into ((3, H, W) float32 pixels in [0, 255], Pillow format name).

    The format is detected from the bytes by the accepted decoders only; the pixel count is
    checked from the header before the pixels are decoded. EXIF orientation is applied, so
    (H, W) is the image as displayed.
    """
    if not data:
        raise RequestRefused(400, "empty_upload", "the request body is empty; send the image file as the body")
    accepted = ", ".join(settings.image_formats)
    try:
        with warnings.catch_warnings():  # the limit checked next replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(settings.image_formats))
    except UnidentifiedImageError:
        raise RequestRefused(
            415,
            "unsupported_image_type",
            f"the upload is not an image in an accepted format ({accepted}); the type is read "
            "from the content, not from the file name or Content-Type",
        ) from None
    except Image.DecompressionBombError as error:
        raise RequestRefused(413, "too_many_pixels", f"{UPLOAD_NAME} declares too many pixels ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise RequestRefused(422, "corrupt_image", f"{UPLOAD_NAME} has a corrupt header ({error})") from None
    try:  # the package's one header check (io/images.py), with this service's limit
        check_pixels(*image.size, settings.max_pixels, UPLOAD_NAME)
    except ImageError as error:
        raise RequestRefused(413, "too_many_pixels", str(error)) from None
    try:
        image.load()
        pixels = load_image(image, UPLOAD_NAME, max_pixels=settings.max_pixels)
    except ImageError as error:
        raise RequestRefused(422, "unusable_image", str(error)) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise RequestRefused(422, "corrupt_image", f"{UPLOAD_NAME} is corrupt or truncated ({error})") from None
    return pixels, str(image.format)


def prepare_upload(
    data: bytes, settings: ServiceSettings, scale: Callable[[tuple[int, int]], Scaling]
) -> tuple[torch.Tensor, str, Scaling]:
    """Decode an upload (`decode_upload`) and resize it to the size ``scale`` picks for it.

    Returns ((3, h, w) float32 0-255 pixels at the working size, Pillow format name, scaling).
    Refuses (422) a working size above ``settings.max_working_pixels`` (a full-size or upscaled
    prediction the model's memory is not meant for).
    """
    pixels, image_format = decode_upload(data, settings)
    try:
        scaling = scale(tuple(pixels.shape[-2:]))
    except ImageError as error:
        raise RequestRefused(422, "invalid_parameter", str(error)) from None
    rows, cols = scaling.working
    if rows * cols > settings.max_working_pixels:
        raise RequestRefused(
            422,
            "too_large_to_predict",
            f"{UPLOAD_NAME} would be predicted at {cols}x{rows} pixels ({scaling.reason}), more than this "
            f"service's limit of {settings.max_working_pixels / 1e6:g} million pixels for the model; "
            "ask for fewer pixels per degree, or send a smaller image",
        )
    return resize_image(pixels, scaling.working), image_format, scaling


def check_min_side(pixels: torch.Tensor, min_side: int) -> None:
    """Refuse (422) an image with a side shorter than ``min_side`` pixels (one readout cell)."""
    height, width = pixels.shape[-2:]
    if min(height, width) < min_side:
        raise RequestRefused(
            422,
            "image_too_small",
            f"{UPLOAD_NAME} is {width}x{height} pixels; the model needs at least {min_side} pixels on each side",
        )
