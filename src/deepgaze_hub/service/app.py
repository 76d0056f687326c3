"""The ASGI application: the routes (routes.py), the state they share, errors as JSON, hardening.

Refused requests get a 4xx with ``{"error": {"status", "code", "message"}}``: the service's own
checks (`RequestRefused`), invalid parameters (422), unknown routes (404/405), and any library
error (`deepgaze_hub.errors.DeepGazeError`: 422 for an image, 400 otherwise) that reaches a
handler. Only a fault of the service itself is a 500 (logged with its traceback); running out of
memory is a 503.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import DeepGazeError, ImageError
from ..model.deepgaze import DeepGaze
from ..version import __version__
from .errors import RequestRefused
from .middleware import SECURITY_HEADERS, HttpHardening
from .protocol import router as protocol_router
from .routes import STATIC_DIR, router
from .settings import ServiceSettings
from .state import ServiceState

logger = logging.getLogger("deepgaze_hub.service")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    """Start the batcher with the server, stop it on shutdown."""
    state: ServiceState = app.state.service
    await state.batcher.start()
    try:
        yield
    finally:
        await state.batcher.close()


def create_app(
    model: DeepGaze, settings: ServiceSettings | None = None, *, name: str = "model", token: str | None = None
) -> FastAPI:
    """The service for ``model`` (put in eval mode), announced as ``name``.

    ``token``: when given, every ``/v1/*`` and ``/conditional_log_density`` request must send
    ``Authorization: Bearer <token>`` (the page ``/``, ``/healthz`` and ``/type`` stay open).
    Raises `ConfigError` for an unusable token.
    """
    settings = settings or ServiceSettings()
    app = FastAPI(
        title="deepgaze-hub prediction service",
        version=__version__,
        description="DeepGaze II fixation densities for uploaded images, also over pysaliency's scanpath "
        "model protocol (/type, /conditional_log_density). Errors: "
        '`{"error": {"status", "code", "message"}}`.',
        docs_url=None,  # the interactive docs pull assets from a CDN; the schema is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = ServiceState.build(model, settings, name, token)
    app.include_router(router)
    app.include_router(protocol_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_error_handlers(app)
    app.add_middleware(HttpHardening)
    return app


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(RequestRefused(status, code, message).body(), status_code=status, headers=headers)


async def refused(request: Request, error: RequestRefused) -> JSONResponse:
    """The refusal as JSON; a refused upload also closes the connection, so that the rest of a
    body nobody reads cannot keep it open."""
    headers = dict(error.headers)
    if request.method == "POST":
        headers["Connection"] = "close"
    return error_response(error.status, error.code, error.message, headers)


async def invalid_parameters(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'][1:]) or problem['loc'][0]}: {problem['msg']}"
        for problem in error.errors()
    )
    return error_response(422, "invalid_parameter", f"invalid request parameters: {problems}")


async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(error.status_code, "http_error")
    return error_response(error.status_code, code, str(error.detail), error.headers)


async def library_error(request: Request, error: DeepGazeError) -> JSONResponse:
    """A user-caused library error that no route turned into its own answer: a 4xx, never a 500."""
    if isinstance(error, ImageError):
        return error_response(422, "unusable_image", str(error))
    return error_response(400, "invalid_request", str(error))


async def server_fault(request: Request, error: Exception) -> JSONResponse:
    """A fault of the service: 503 when out of memory, else 500; the server logs the traceback.

    Answered outside `HttpHardening` (Starlette's outermost layer), so the headers are set here.
    """
    if isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)):
        message = "the service ran out of memory; retry later or send a smaller image"
        return error_response(503, "out_of_memory", message, {**SECURITY_HEADERS, "Retry-After": "5"})
    logger.error("internal error answering %s %s: %r", request.method, request.url.path, error)
    message = f"internal error ({type(error).__name__}); see the service log"
    return error_response(500, "internal_error", message, SECURITY_HEADERS)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestRefused, refused)
    app.add_exception_handler(RequestValidationError, invalid_parameters)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(DeepGazeError, library_error)
    app.add_exception_handler(Exception, server_fault)
