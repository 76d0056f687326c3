"""What every image request goes through, whichever API it uses (routes.py, protocol.py).

* `require_token`: the service's token, when it has one;
* `receive_body`: the upload checks (upload slots, size limit, upload timeout: limits.py);
* `within_deadline`: a place in the queue (``max_queue``) and the request's deadline
  (``request_timeout_s``);
* `predict_upload`: decode, scale to the working size, check, run the model (batched).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from typing import TypeVar

import torch
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import ClientDisconnect

from ..errors import DeepGazeError
from ..io.scale import Scaling
from .errors import RequestRefused
from .limits import check_min_side, prepare_upload, receive_upload
from .state import ServiceState, service_state

T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="the service's token, when it was started with one")


def presented_token(authorization: str | None) -> str:
    """The token an ``Authorization`` header carries ('' when none).

    ``Bearer <token>``; or ``Basic`` credentials whose password is the token (any user name):
    what HTTP clients such as requests send for a URL ``http://user:<token>@host:port``, the only
    way pysaliency's `HTTPScanpathModel` can send one.
    """
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


async def require_token(
    request: Request, _declared: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> None:
    """Refuse (401) a request without the service's token, compared in constant time.

    (``_declared`` only declares the bearer scheme in the OpenAPI schema; see `presented_token`.)
    """
    expected = service_state(request).token
    if expected is None:
        return
    given = presented_token(request.headers.get("authorization"))
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
        raise RequestRefused(
            401,
            "unauthorized",
            "this service needs a token: send the header 'Authorization: Bearer <token>' "
            "(on the web page, enter it in the token field; from pysaliency, put it in the URL: "
            "http://token:<token>@host:port)",
            headers={"WWW-Authenticate": 'Bearer realm="deepgaze-hub"'},
        )


async def receive_body(request: Request, state: ServiceState) -> bytes:
    """The whole request body, through the upload checks (slots per client, size, upload timeout)."""
    settings = state.settings
    client = request.client.host if request.client is not None else "unknown"
    with state.uploads.hold(client):
        try:
            return await receive_upload(
                request.stream(),
                request.headers.get("content-length"),
                settings,
                min(settings.upload_timeout_s, settings.request_timeout_s),
            )
        except ClientDisconnect:
            raise RequestRefused(
                400, "client_disconnected", "the client went away before the upload was complete"
            ) from None


async def within_deadline(state: ServiceState, deadline: float, work: Callable[[], Awaitable[T]]) -> T:
    """``work()``, counted in the queue (429 when full), refused (408) once the loop's clock
    passes ``deadline``."""
    loop = asyncio.get_running_loop()
    with state.queue_slot():
        try:
            return await asyncio.wait_for(work(), max(deadline - loop.time(), 1e-3))
        except asyncio.TimeoutError:
            raise RequestRefused(
                408,
                "timeout",
                f"the request took longer than this service's limit of {state.settings.request_timeout_s:g} s "
                "(the service is busy or the image is large); retry, or send a smaller image",
            ) from None


def request_deadline(state: ServiceState) -> float:
    """The event loop's time by which a request arriving now must be answered."""
    return asyncio.get_running_loop().time() + state.settings.request_timeout_s


async def predict_upload(
    state: ServiceState, data: bytes, pixels_per_degree: float | None
) -> tuple[torch.Tensor, torch.Tensor, str, Scaling]:
    """Decode, scale, check and predict one fully received image file.

    Returns ((3, h, w) float32 0-255 pixels and the (h, w) log density (nats) at the working
    size, the Pillow format name, the scaling from the upload's size). The image is shrunk to the
    working size before it is queued, so queued memory is bounded by the working size, not by
    the upload's (`ServiceState.decoding` bounds full-size decodes).
    """
    async with state.decoding:
        pixels, image_format, scaling = await asyncio.to_thread(
            prepare_upload, data, state.settings, state.scaler(pixels_per_degree)
        )
    check_min_side(pixels, state.min_side)
    try:
        log_density = await state.batcher.submit(pixels)
    except DeepGazeError as error:  # e.g. an image too small for the backbone
        raise RequestRefused(422, "unusable_image", str(error)) from None
    return pixels, log_density, image_format, scaling
