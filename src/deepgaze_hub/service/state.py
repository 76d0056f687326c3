"""What one running service holds (``app.state.service``): the model, its limits, queues and results."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from starlette.requests import Request

from ..io.scale import Scaling
from ..model.deepgaze import DeepGaze
from .batcher import MicroBatcher
from .errors import RequestRefused
from .limits import UploadSlots
from .results import ResultStore
from .settings import ServiceSettings, check_token


def model_runner(model: DeepGaze):
    """``run_batch`` for `MicroBatcher`: (B, 3, H, W) 0-255 -> (B, H, W) log densities on the CPU."""
    device = model.device

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(images.to(device)).float().cpu()

    return run


@dataclass
class ServiceState:
    """The state of one service; handlers reach it with `service_state`.

    ``in_flight`` counts predict requests whose upload has fully arrived and that are not answered
    yet (queued, in the model, encoding); uploads in progress are counted by ``uploads``.
    """

    model: DeepGaze
    name: str
    settings: ServiceSettings
    token: str | None
    batcher: MicroBatcher
    store: ResultStore
    uploads: UploadSlots
    card: str
    config: dict[str, Any]
    min_side: int
    decoding: asyncio.Semaphore
    in_flight: int = field(default=0)

    def scaler(self, pixels_per_degree: float | None) -> Callable[[tuple[int, int]], Scaling]:
        """``size -> Scaling``: the size the model predicts an upload of ``size`` (rows, cols) at."""

        def scale(size: tuple[int, int]) -> Scaling:
            return self.model.scaling(size, pixels_per_degree=pixels_per_degree, full_size=self.settings.full_size)

        return scale

    @classmethod
    def build(cls, model: DeepGaze, settings: ServiceSettings, name: str, token: str | None) -> ServiceState:
        """The state for ``model`` (put in eval mode); paths are hidden unless ``settings.show_model_path``."""
        check_token(token)
        model.eval()
        model.backbone.precision = settings.precision
        card = str(model.generate_model_card())
        config = model.config.to_dict()
        if not settings.show_model_path:
            name, config, card = hide_paths(name, config, card)
        batcher = MicroBatcher(
            model_runner(model),
            max_batch=settings.max_batch,
            max_wait_s=settings.batch_wait_ms / 1000.0,
            max_batch_pixels=settings.max_batch_pixels,
        )
        return cls(
            model=model,
            name=name,
            settings=settings,
            token=token,
            batcher=batcher,
            store=ResultStore(settings.result_cache_bytes),
            uploads=UploadSlots(settings.max_uploads, settings.max_uploads_per_client),
            card=card,
            config=config,
            min_side=math.ceil(model.config.downsample * model.config.readout_factor),  # one readout cell
            decoding=asyncio.Semaphore(settings.max_decodes),
        )

    @contextlib.contextmanager
    def queue_slot(self) -> Iterator[None]:
        """Count a fully received request as in flight; refuse it (429) when ``max_queue`` are."""
        if self.in_flight >= self.settings.max_queue:
            raise RequestRefused(
                429,
                "busy",
                f"the service is busy ({self.in_flight} requests in flight, limit {self.settings.max_queue}); "
                "retry shortly",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


def service_state(request: Request) -> ServiceState:
    """The `ServiceState` of the application serving ``request``."""
    return request.app.state.service


def hide_paths(name: str, config: dict[str, Any], card: str) -> tuple[str, dict[str, Any], str]:
    """``name``, ``config`` and ``card`` with local filesystem paths cut to their last component."""
    hidden: dict[str, str] = {}

    def cut(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: cut(item) for key, item in value.items()}
        if isinstance(value, list):
            return [cut(item) for item in value]
        if isinstance(value, str) and _is_local_path(value):
            hidden[value] = Path(value).name or value
            return hidden[value]
        return value

    name, config = cut(name), cut(config)
    for path in sorted(hidden, key=len, reverse=True):
        card = card.replace(path, hidden[path])
    return name, config, card


def _is_local_path(text: str) -> bool:
    if text.startswith(("hf-hub:", "http://", "https://")):
        return False
    return os.path.isabs(os.path.expanduser(text)) or os.path.exists(text)
