"""The scanpath-model protocol of pysaliency's `HTTPScanpathModel` and the MIT/Tuebingen benchmark.

A model submitted to the benchmark runs as a container serving this API (port 4000 in the
benchmark's samples); pysaliency's ``HTTPScanpathModel(url)`` scores any such service:

* ``GET /type`` -> ``{"type": "ScanpathModel", "version": "v1.0.0"}`` (open, like ``/healthz``);
* ``POST /conditional_log_density``: a ``multipart/form-data`` body with the file field
  ``stimulus`` (the image file; pysaliency sends a PNG of the stimulus array: RGB for colour, 8-bit
  grayscale for a 2-d stimulus; any accepted format works, detected from the content) and the
  field ``json_data``: ``{"x_hist": [...], "y_hist": [...], "t_hist": [...], "attributes": {...}}``
  (the viewer's previous fixations, x = column and y = row in pixels, t in seconds; `ScanpathHistory`).
  Answers ``{"log_density": [[...], ...]}``: the (H, W) log density in nats at the stimulus' own
  size, row by row, equal to ``DeepGaze.predict`` (and ``/v1/predict``) on the same image with
  the service's scaling. DeepGaze II is a static model: the history is checked, then ignored.

The request passes the same checks as ``/v1/predict`` (handling.py: token, upload slots, the
whole body within ``max_upload_bytes``, ``max_pixels``, ``max_queue``, timeouts) and is refused
with the same 4xx JSON errors. A service with a token needs it here too; pysaliency's client sends
no headers of its own, but requests turns credentials in the URL into a Basic header, which the
service accepts: ``HTTPScanpathModel("http://token:<token>@host:4000")``.

Floats are written by orjson in the shortest form that reads back as the same float32 (about 9 MB
and 0.1 s for 1024 x 768 pixels; Python's json module takes 25 times as long for 16 MB).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import torch
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..errors import ConfigError
from ..io.scale import Scaling
from ..io.typed import bounded, parse, validate
from .errors import RequestRefused
from .handling import predict_upload, receive_body, request_deadline, require_token, within_deadline
from .multipart import FormPart, form_boundary, parse_form
from .results import at_original_size
from .schemas import ErrorResponse
from .state import ServiceState, service_state

#: What ``GET /type`` answers: the protocol pysaliency's `HTTPScanpathModel` checks for.
MODEL_TYPE = {"type": "ScanpathModel", "version": "v1.0.0"}
#: Largest ``json_data`` field, in bytes (10 000 fixations take about 600 kB).
MAX_JSON_DATA_BYTES = 2**20

_HINT = (
    "send the file field 'stimulus' (the image) and the field 'json_data' "
    '({"x_hist": [...], "y_hist": [...], "t_hist": [...], "attributes": {}}), as pysaliency\'s HTTPScanpathModel does'
)
_FORM_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["stimulus", "json_data"],
                "properties": {
                    "stimulus": {"type": "string", "format": "binary", "description": "the image file (PNG, JPEG, ...)"},
                    "json_data": {
                        "type": "string",
                        "description": 'JSON {"x_hist": [...], "y_hist": [...], "t_hist": [...], "attributes": {}}: '
                        "previous fixations (pixels, seconds; null for unknown), ignored by static models",
                    },
                },
            }
        }
    },
}
_ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 408, 413, 415, 422, 429)}


@dataclass(frozen=True)
class ScanpathHistory:
    """The ``json_data`` of a request: the viewer's previous fixations and other attributes.

    Three lists of equal length (``null``, or NaN, for an unknown value, as pysaliency writes NaN);
    ``attributes`` any JSON mapping. Checked (`deepgaze_hub.io.typed`), then ignored by static models.
    """

    x_hist: list[float | None] = bounded(help="previous fixations' x (column), pixels")
    y_hist: list[float | None] = bounded(help="previous fixations' y (row), pixels")
    t_hist: list[float | None] = bounded(help="previous fixations' times, seconds")
    attributes: dict[str, Any] = bounded(default_factory=dict, help="other attributes of the fixation")

    def __post_init__(self) -> None:
        validate(self, "json_data")
        lengths = {len(self.x_hist), len(self.y_hist), len(self.t_hist)}
        if len(lengths) > 1:
            raise ConfigError(
                f"json_data: x_hist, y_hist and t_hist must have the same length, got "
                f"{len(self.x_hist)}, {len(self.y_hist)} and {len(self.t_hist)}"
            )


def _nan_or_refuse(name: str) -> None:
    if name != "NaN":
        raise ValueError(f"{name} is not a number JSON allows")
    return None


def read_history(part: FormPart | None, max_history: int) -> ScanpathHistory:
    """The `ScanpathHistory` in a ``json_data`` field; 400, 413 or 422 `RequestRefused` otherwise."""
    if part is None:
        raise RequestRefused(400, "missing_field", f"the form has no field 'json_data'; {_HINT}")
    if len(part.data) > MAX_JSON_DATA_BYTES:
        raise RequestRefused(
            413, "json_data_too_large", f"json_data is {len(part.data)} bytes, more than {MAX_JSON_DATA_BYTES}"
        )
    try:
        data = json.loads(part.data.decode("utf-8"), parse_constant=_nan_or_refuse)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        message = str(error) if not isinstance(error, RecursionError) else "nested too deeply"
        raise RequestRefused(400, "malformed_json_data", f"json_data is not valid JSON ({message}); {_HINT}") from None
    try:
        history = parse(ScanpathHistory, data, "json_data")
    except ConfigError as error:
        raise RequestRefused(422, "invalid_json_data", str(error)) from None
    if len(history.x_hist) > max_history:
        raise RequestRefused(
            422,
            "invalid_json_data",
            f"json_data: the history has {len(history.x_hist)} fixations, more than this service's "
            f"limit of {max_history} (max_history)",
        )
    return history


def encode_log_density(log_density: torch.Tensor, scaling: Scaling) -> bytes:
    """``{"log_density": [[...], ...]}`` for an (h, w) log density at the working size, at the
    upload's own size (H, W), float32 values in their shortest exact decimal form."""
    full = np.ascontiguousarray(at_original_size(log_density, scaling))
    if not np.isfinite(full).all():  # JSON has no infinities; a model fault, not the client's
        raise RuntimeError("the model produced a log density that is not finite")
    return orjson.dumps({"log_density": full}, option=orjson.OPT_SERIALIZE_NUMPY)


router = APIRouter(tags=["scanpath model protocol (pysaliency HTTPScanpathModel)"])


@router.get("/type", summary="The protocol this service speaks (pysaliency's HTTPScanpathModel checks it)")
async def model_type() -> dict[str, str]:
    return dict(MODEL_TYPE)


@router.post(
    "/conditional_log_density",
    dependencies=[Depends(require_token)],
    response_class=Response,
    openapi_extra={"requestBody": _FORM_BODY},
    responses={**_ERRORS, 200: {"content": {"application/json": {}}, "description": '{"log_density": [[...]]}'}},
    summary="The log density (nats, the stimulus' size) of a stimulus given the previous fixations",
)
async def conditional_log_density(request: Request) -> Response:
    state = service_state(request)
    deadline = request_deadline(state)
    content_type = request.headers.get("content-type")
    form_boundary(content_type, _HINT)  # refuse anything but a form before reading it
    body = await receive_body(request, state)
    form = await asyncio.to_thread(parse_form, body, content_type, _HINT)
    del body
    stimulus = form.get("stimulus")
    if stimulus is None or not stimulus.data:
        what = "no file field 'stimulus'" if stimulus is None else "an empty 'stimulus'"
        raise RequestRefused(400, "missing_field", f"the form has {what}; {_HINT}")
    read_history(form.get("json_data"), state.settings.max_history)  # checked, unused: a static model
    return await within_deadline(state, deadline, lambda: answer(state, stimulus.data))


async def answer(state: ServiceState, data: bytes) -> Response:
    """Predict one stimulus at the service's scaling and encode the answer (off the event loop)."""
    _, log_density, _, scaling = await predict_upload(state, data, None)
    content = await asyncio.to_thread(encode_log_density, log_density, scaling)
    return Response(content, media_type="application/json")
