"""The prediction web service behind ``deepgaze-hub serve``: a JSON API and a web page.

* `create_app` (app.py): the FastAPI application for one loaded model;
* `ServiceSettings` (settings.py): upload, pixel, timeout, queue and batching limits;
* `MicroBatcher` (batcher.py): concurrent requests batched onto the model off the event loop;
* limits.py: the checks every upload passes; results.py: outputs and the store of recent ones;
* server.py: uvicorn in the foreground or on a background thread (`BackgroundServer`).

The web stack (FastAPI, uvicorn) comes with the ``serve`` extra: ``pip install "deepgaze-hub[serve]"``.
Names are imported on first use, so ``settings`` and ``batcher`` work without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BackgroundServer": "server",
    "BatchStats": "batcher",
    "MicroBatcher": "batcher",
    "RequestRefused": "errors",
    "ServiceConfigError": "settings",
    "ServiceSettings": "settings",
    "create_app": "app",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
