"""The prediction web service behind ``deepgaze-hub serve``: a JSON API and a web page.

* `create_app` (app.py): the FastAPI application for one loaded model (optional bearer token);
  routes.py: its handlers (``/v1/*``, the page); protocol.py: pysaliency's scanpath-model protocol
  (``/type``, ``/conditional_log_density``, what the MIT/Tuebingen benchmark calls);
  handling.py: the steps every image request passes; state.py: what they share (``app.state.service``);
* multipart.py: reading a received ``multipart/form-data`` body;
* `ServiceSettings` (settings.py): upload, pixel, timeout, queue and batching limits;
* `MicroBatcher` (batcher.py): concurrent requests batched onto the model off the event loop;
* limits.py: the checks every upload passes; results.py: outputs and the store of recent ones;
* middleware.py: security headers on every response, HEAD for every GET route;
* server.py: uvicorn (with a deadline for request headers) in the foreground or on a background
  thread (`BackgroundServer`).

The web stack (FastAPI, uvicorn) comes with the ``serve`` extra: ``pip install "deepgaze-hub[serve]"``.
Names are imported on first use, so ``settings`` and ``batcher`` work without it.
"""

from __future__ import annotations

from .._lazy import lazy_getattr

_EXPORTS = {
    "BackgroundServer": ".server",
    "BatchStats": ".batcher",
    "MicroBatcher": ".batcher",
    "ServiceSettings": ".settings",
    "create_app": ".app",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
