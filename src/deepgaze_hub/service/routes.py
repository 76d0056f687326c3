"""The routes of the service (module-level handlers; their state is ``app.state.service``).

* ``POST /v1/predict``: the request body is the image file itself (any accepted format, detected
  from the content). Answers JSON (`PredictResponse`: base64 ``.npy`` log density, base64 PNG
  overlay, sampled fixations), or with ``output=npy`` the raw float32 ``.npy`` file, or with
  ``output=png`` the overlay PNG.
* ``GET /v1/predictions/{id}/overlay.png`` and ``.../log_density.npy``: a recent prediction's
  outputs again (other overlay toggles, downloads) without rerunning the model.
* ``GET /v1/models``: the loaded model, its config and card, and the service's limits.
* ``GET /healthz``; ``GET /``: the web page (no external assets).

``/v1/*`` needs ``Authorization: Bearer <token>`` when the service has a token (`require_token`).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response

from .errors import RequestRefused
from .handling import predict_upload, receive_body, request_deadline, require_token, within_deadline
from .limits import refuse_multipart
from .results import Prediction
from .schemas import (
    ErrorResponse,
    Health,
    Links,
    LogDensityPayload,
    ModelInfo,
    ModelsResponse,
    PredictResponse,
    SampledFixations,
    ScalingInfo,
)
from .state import ServiceState, service_state

STATIC_DIR = Path(__file__).with_name("static")
NPY_MEDIA_TYPE = "application/octet-stream"

_ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 404, 408, 413, 415, 422, 429)}
_IMAGE_BODY = {
    "required": True,
    "description": "the image file itself (JPEG, PNG, WebP, ...; the type is read from the content)",
    "content": {
        media: {"schema": {"type": "string", "format": "binary"}}
        for media in ("application/octet-stream", "image/jpeg", "image/png", "image/*")
    },
}
router = APIRouter()
api = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses={401: {"model": ErrorResponse}})


@dataclass(frozen=True)
class Asked:
    """What a predict request asked for (its query parameters, the seed drawn if none was given)."""

    output: str
    log_density: bool
    overlay: bool
    fixations: int
    seed: int
    show_density: bool
    show_contours: bool
    show_fixations: bool
    pixels_per_degree: float | None = None


def check_fixations(request: Request, fixations: int) -> int:
    """``fixations``, refused (422) above this service's ``max_fixations``."""
    limit = service_state(request).settings.max_fixations
    if fixations > limit:
        raise RequestRefused(
            422, "invalid_parameter", f"invalid request parameters: fixations: must be <= {limit}, got {fixations}"
        )
    return fixations


def predict_options(
    request: Request,
    output: Literal["json", "npy", "png"] = Query("json", description="json, npy (raw float32 .npy) or png (overlay)"),
    log_density: bool = Query(True, description="JSON: include the log density (base64 .npy)"),
    overlay: bool = Query(True, description="JSON: include the overlay PNG (base64)"),
    fixations: int = Query(0, ge=0, description="sample this many fixations (at most max_fixations, see /v1/models)"),
    seed: int | None = Query(
        None, ge=0, lt=2**63, description="seed of the fixation sampling (default: random, returned)"
    ),
    show_density: bool = Query(True, description="overlay: colour the density"),
    show_contours: bool = Query(True, description="overlay: draw contours at 25/50/75% of the probability mass"),
    show_fixations: bool = Query(True, description="overlay: draw the sampled fixations"),
    pixels_per_degree: float | None = Query(
        None,
        gt=0,
        le=10000,
        description="pixels per degree of visual angle of the image as viewed: it is rescaled so the model "
        "sees its training scale (default: images larger than the model's working size are shrunk to it)",
    ),
) -> Asked:
    return Asked(
        output=output,
        log_density=log_density,
        overlay=overlay,
        fixations=check_fixations(request, fixations),
        seed=seed if seed is not None else secrets.randbelow(2**31),
        show_density=show_density,
        show_contours=show_contours,
        show_fixations=show_fixations,
        pixels_per_degree=pixels_per_degree,
    )


@api.post(
    "/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    openapi_extra={"requestBody": _IMAGE_BODY},
    responses={
        **_ERRORS,
        200: {"content": {NPY_MEDIA_TYPE: {}, "image/png": {}}, "description": "JSON, .npy or PNG (see output)"},
    },
    summary="Predict the fixation density of an uploaded image",
)
async def predict(request: Request, asked: Asked = Depends(predict_options)):
    state = service_state(request)
    deadline = request_deadline(state)
    refuse_multipart(request.headers.get("content-type"))
    data = await receive_body(request, state)
    return await within_deadline(state, deadline, lambda: answer(state, data, asked))


async def answer(state: ServiceState, data: bytes, asked: Asked) -> Response | PredictResponse:
    """Predict, keep and encode one fully received upload (see `predict_upload`)."""
    pixels, log_density, image_format, scaling = await predict_upload(state, data, asked.pixels_per_degree)
    prediction = await asyncio.to_thread(Prediction.create, pixels, log_density, image_format, scaling)
    kept = state.store.add(prediction)
    return await asyncio.to_thread(respond, prediction, asked, state.name, kept)


def respond(prediction: Prediction, asked: Asked, model_name: str, kept: bool) -> Response | PredictResponse:
    """The answer to a predict request (CPU work: sampling, PNG and npy encoding; run off the loop)."""
    headers = {"X-Prediction-Id": prediction.id}
    if asked.output == "npy":
        headers["Content-Disposition"] = 'attachment; filename="log_density.npy"'
        return Response(prediction.log_density_npy(), media_type=NPY_MEDIA_TYPE, headers=headers)
    points = prediction.fixations(asked.fixations, asked.seed) if asked.fixations else None
    png = None
    if asked.output == "png" or asked.overlay:
        png = prediction.overlay_png(
            show_density=asked.show_density,
            show_contours=asked.show_contours,
            fixations=points if asked.show_fixations else None,
        )
    if asked.output == "png":
        return Response(png, media_type="image/png", headers=headers)
    height, width = prediction.scaling.original
    base = f"/v1/predictions/{prediction.id}"
    original = prediction.to_original(*points) if points is not None else None
    return PredictResponse(
        id=prediction.id,
        model=model_name,
        width=width,
        height=height,
        image_format=prediction.image_format,
        scaling=ScalingInfo(**prediction.scaling.to_dict(), text=prediction.scaling.describe()),
        log_density=LogDensityPayload(shape=[height, width], data=_base64(prediction.log_density_npy()))
        if asked.log_density
        else None,
        overlay_png=_base64(png) if png is not None else None,
        fixations=SampledFixations(x=original[0].tolist(), y=original[1].tolist(), seed=asked.seed)
        if original is not None
        else None,
        links=Links(overlay=f"{base}/overlay.png", log_density=f"{base}/log_density.npy") if kept else None,
    )


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def stored_prediction(request: Request, prediction_id: str) -> Prediction:
    """The kept prediction ``prediction_id``, or 404."""
    state = service_state(request)
    prediction = state.store.get(prediction_id)
    if prediction is None:
        raise RequestRefused(
            404,
            "unknown_prediction",
            f"no prediction {prediction_id!r}: it never existed or the service no longer keeps it "
            f"(it keeps the most recent {state.settings.result_cache_bytes / 2**20:.0f} MiB of results); "
            "POST the image to /v1/predict again",
        )
    return prediction


@api.get(
    "/predictions/{prediction_id}/overlay.png",
    response_class=Response,
    responses={**_ERRORS, 200: {"content": {"image/png": {}}}},
    summary="The overlay of a recent prediction, with other toggles",
)
async def prediction_overlay(
    request: Request,
    prediction_id: str,
    show_density: bool = True,
    show_contours: bool = True,
    fixations: int = Query(0, ge=0, description="draw this many sampled fixations (at most max_fixations)"),
    seed: int = Query(0, ge=0, lt=2**63, description="seed of the sampling (same seed, same fixations)"),
):
    check_fixations(request, fixations)
    prediction = stored_prediction(request, prediction_id)

    def draw() -> bytes:
        points = prediction.fixations(fixations, seed) if fixations else None
        return prediction.overlay_png(show_density=show_density, show_contours=show_contours, fixations=points)

    return Response(await asyncio.to_thread(draw), media_type="image/png")


@api.get(
    "/predictions/{prediction_id}/log_density.npy",
    response_class=Response,
    responses={**_ERRORS, 200: {"content": {NPY_MEDIA_TYPE: {}}}},
    summary="The log density of a recent prediction, float32 (H, W) .npy",
)
async def prediction_log_density(request: Request, prediction_id: str):
    prediction = stored_prediction(request, prediction_id)
    data = await asyncio.to_thread(prediction.log_density_npy)
    headers = {"Content-Disposition": 'attachment; filename="log_density.npy"'}
    return Response(data, media_type=NPY_MEDIA_TYPE, headers=headers)


@api.get("/models", response_model=ModelsResponse, summary="The loaded model and the service's limits")
async def models(request: Request) -> ModelsResponse:
    state = service_state(request)
    info = ModelInfo(
        name=state.name,
        num_members=state.model.num_members,
        parameters=sum(p.numel() for p in state.model.parameters()),
        device=str(state.model.device),
        config=state.config,
        card=state.card,
    )
    return ModelsResponse(models=[info], limits=state.settings.to_dict())


@router.get("/healthz", response_model=Health, summary="Liveness and batching counters")
async def healthz(request: Request) -> Health:
    state = service_state(request)
    stats = state.batcher.stats
    return Health(
        status="ok",
        in_flight=state.in_flight,
        uploading=state.uploads.active,
        batches=stats.batches,
        images=stats.images,
        largest_batch=stats.largest_batch,
    )


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


router.include_router(api)
