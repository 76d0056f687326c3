"""The ASGI application: the JSON API, the web page, errors as JSON.

Routes:

* ``POST /v1/predict``: the request body is the image file itself (any accepted format, detected
  from the content). Answers JSON (`PredictResponse`: base64 ``.npy`` log density, base64 PNG
  overlay, sampled fixations), or with ``output=npy`` the raw float32 ``.npy`` file, or with
  ``output=png`` the overlay PNG.
* ``GET /v1/predictions/{id}/overlay.png`` and ``.../log_density.npy``: a recent prediction's
  outputs again (other overlay toggles, downloads) without rerunning the model.
* ``GET /v1/models``: the loaded model, its config and card, and the service's limits.
* ``GET /healthz``; ``GET /openapi.json``; ``GET /``: the web page (no external assets).

Refused requests get a 4xx with ``{"error": {"status", "code", "message"}}`` (`RequestRefused`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import DeepGazeError
from ..model.deepgaze import DeepGaze
from ..version import __version__
from .batcher import MicroBatcher
from .errors import RequestRefused
from .limits import check_min_side, decode_upload, read_body, refuse_multipart
from .results import Prediction, ResultStore
from .schemas import (
    ErrorResponse,
    Fixations,
    Health,
    Links,
    LogDensityPayload,
    ModelInfo,
    ModelsResponse,
    PredictResponse,
)
from .settings import ServiceSettings

STATIC_DIR = Path(__file__).with_name("static")
NPY_MEDIA_TYPE = "application/octet-stream"

_ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 408, 413, 415, 422, 429)}
_IMAGE_BODY = {
    "required": True,
    "description": "the image file itself (JPEG, PNG, WebP, ...; the type is read from the content)",
    "content": {
        media: {"schema": {"type": "string", "format": "binary"}}
        for media in ("application/octet-stream", "image/jpeg", "image/png", "image/*")
    },
}


def model_runner(model: DeepGaze):
    """``run_batch`` for `MicroBatcher`: (B, 3, H, W) 0-255 -> (B, H, W) log densities on the CPU."""
    device = model.device

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(images.to(device)).float().cpu()

    return run


def create_app(model: DeepGaze, settings: ServiceSettings | None = None, *, name: str = "model") -> FastAPI:
    """The service for ``model`` (put in eval mode), announced as ``name``."""
    settings = settings or ServiceSettings()
    model.eval()
    card = str(model.generate_model_card())
    min_side = math.ceil(model.config.downsample * model.config.readout_factor)  # one readout cell
    batcher = MicroBatcher(
        model_runner(model),
        max_batch=settings.max_batch,
        max_wait_s=settings.batch_wait_ms / 1000.0,
        max_batch_pixels=settings.max_batch_pixels,
    )
    store = ResultStore(settings.result_cache_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.close()

    app = FastAPI(
        title="deepgaze-hub prediction service",
        version=__version__,
        description="DeepGaze II fixation densities for uploaded images. Errors: "
        '`{"error": {"status", "code", "message"}}`.',
        docs_url=None,  # the interactive docs pull assets from a CDN; the schema is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    _install_error_handlers(app)

    def stored_prediction(prediction_id: str) -> Prediction:
        prediction = store.get(prediction_id)
        if prediction is None:
            raise RequestRefused(
                404,
                "unknown_prediction",
                f"no prediction {prediction_id!r}: it never existed or the service no longer keeps it "
                f"(it keeps the most recent {settings.result_cache_bytes / 2**20:.0f} MiB of results); "
                "POST the image to /v1/predict again",
            )
        return prediction

    async def predict_upload(request: Request) -> Prediction:
        refuse_multipart(request.headers.get("content-type"))
        try:
            data = await read_body(request.stream(), request.headers.get("content-length"), settings.max_upload_bytes)
        except ClientDisconnect:
            raise RequestRefused(
                400, "client_disconnected", "the client went away before the upload was complete"
            ) from None
        pixels, image_format = await asyncio.to_thread(decode_upload, data, settings)
        check_min_side(pixels, min_side)
        try:
            log_density = await batcher.submit(pixels)
        except DeepGazeError as error:  # e.g. an image too small for the backbone
            raise RequestRefused(422, "unusable_image", str(error)) from None
        return await asyncio.to_thread(Prediction.create, pixels, log_density, image_format)

    in_flight = 0  # predict requests being served: uploading, decoding, waiting, in the model, encoding

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        openapi_extra={"requestBody": _IMAGE_BODY},
        responses={
            **_ERRORS,
            200: {"content": {NPY_MEDIA_TYPE: {}, "image/png": {}}, "description": "JSON, .npy or PNG (see output)"},
        },
        summary="Predict the fixation density of an uploaded image",
    )
    async def predict(
        request: Request,
        output: Literal["json", "npy", "png"] = Query(
            "json", description="json, npy (raw float32 .npy) or png (overlay)"
        ),
        log_density: bool = Query(True, description="JSON: include the log density (base64 .npy)"),
        overlay: bool = Query(True, description="JSON: include the overlay PNG (base64)"),
        fixations: int = Query(0, ge=0, le=settings.max_fixations, description="sample this many fixations"),
        seed: int | None = Query(
            None, ge=0, lt=2**63, description="seed of the fixation sampling (default: random, returned)"
        ),
        show_density: bool = Query(True, description="overlay: colour the density"),
        show_contours: bool = Query(True, description="overlay: draw contours at 25/50/75% of the probability mass"),
        show_fixations: bool = Query(True, description="overlay: draw the sampled fixations"),
    ):
        nonlocal in_flight
        if in_flight >= settings.max_queue:
            raise RequestRefused(
                429,
                "busy",
                f"the service is busy ({in_flight} requests in flight, limit {settings.max_queue}); retry shortly",
                headers={"Retry-After": "1"},
            )
        asked = Asked(
            output=output,
            log_density=log_density,
            overlay=overlay,
            fixations=fixations,
            seed=seed if seed is not None else secrets.randbelow(2**31),
            show_density=show_density,
            show_contours=show_contours,
            show_fixations=show_fixations,
        )

        async def answer() -> Response | PredictResponse:
            prediction = await predict_upload(request)
            kept = store.add(prediction)
            return await asyncio.to_thread(respond, prediction, asked, name, kept)

        in_flight += 1
        try:
            return await asyncio.wait_for(answer(), settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestRefused(
                408,
                "timeout",
                f"the request took longer than this service's limit of {settings.request_timeout_s:g} s "
                "(the upload was too slow or the service is busy); retry, or send a smaller image",
            ) from None
        finally:
            in_flight -= 1

    @app.get(
        "/v1/predictions/{prediction_id}/overlay.png",
        response_class=Response,
        responses={**_ERRORS, 200: {"content": {"image/png": {}}}},
        summary="The overlay of a recent prediction, with other toggles",
    )
    async def prediction_overlay(
        prediction_id: str,
        show_density: bool = True,
        show_contours: bool = True,
        fixations: int = Query(0, ge=0, le=settings.max_fixations, description="draw this many sampled fixations"),
        seed: int = Query(0, ge=0, lt=2**63, description="seed of the sampling (same seed, same fixations)"),
    ):
        prediction = stored_prediction(prediction_id)

        def draw() -> bytes:
            points = prediction.fixations(fixations, seed) if fixations else None
            return prediction.overlay_png(show_density=show_density, show_contours=show_contours, fixations=points)

        return Response(await asyncio.to_thread(draw), media_type="image/png")

    @app.get(
        "/v1/predictions/{prediction_id}/log_density.npy",
        response_class=Response,
        responses={**_ERRORS, 200: {"content": {NPY_MEDIA_TYPE: {}}}},
        summary="The log density of a recent prediction, float32 (H, W) .npy",
    )
    async def prediction_log_density(prediction_id: str):
        prediction = stored_prediction(prediction_id)
        data = await asyncio.to_thread(prediction.log_density_npy)
        headers = {"Content-Disposition": 'attachment; filename="log_density.npy"'}
        return Response(data, media_type=NPY_MEDIA_TYPE, headers=headers)

    @app.get("/v1/models", response_model=ModelsResponse, summary="The loaded model and the service's limits")
    async def models() -> ModelsResponse:
        info = ModelInfo(
            name=name,
            num_members=model.num_members,
            parameters=sum(p.numel() for p in model.parameters()),
            device=str(model.device),
            config=model.config.to_dict(),
            card=card,
        )
        return ModelsResponse(models=[info], limits=settings.to_dict())

    @app.get("/healthz", response_model=Health, summary="Liveness and batching counters")
    async def healthz() -> Health:
        stats = batcher.stats
        return Health(
            status="ok",
            in_flight=in_flight,
            batches=stats.batches,
            images=stats.images,
            largest_batch=stats.largest_batch,
        )

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


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
    height, width = prediction.log_density.shape
    base = f"/v1/predictions/{prediction.id}"
    return PredictResponse(
        id=prediction.id,
        model=model_name,
        width=width,
        height=height,
        image_format=prediction.image_format,
        log_density=LogDensityPayload(shape=[height, width], data=_base64(prediction.log_density_npy()))
        if asked.log_density
        else None,
        overlay_png=_base64(png) if png is not None else None,
        fixations=Fixations(x=points[0].tolist(), y=points[1].tolist(), seed=asked.seed)
        if points is not None
        else None,
        links=Links(overlay=f"{base}/overlay.png", log_density=f"{base}/log_density.npy") if kept else None,
    )


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(RequestRefused(status, code, message).body(), status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestRefused)
    async def refused(request: Request, error: RequestRefused) -> JSONResponse:
        return _error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'][1:]) or problem['loc'][0]}: {problem['msg']}"
            for problem in error.errors()
        )
        return _error_response(422, "invalid_parameter", f"invalid request parameters: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return _error_response(
            error.status_code, codes.get(error.status_code, "http_error"), str(error.detail), error.headers
        )

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:  # uvicorn logs the traceback
        return _error_response(500, "internal_error", f"internal error ({type(error).__name__}); see the service log")
