"""Dynamic micro-batching: concurrent requests share forward passes of the model.

Requests `submit` one (3, H, W) tensor each and await their own (H, W) result. A worker task
takes the waiting requests in arrival order: once the oldest has waited ``max_wait_s`` (or
``max_batch`` are waiting) it takes up to ``max_batch`` of them. Images of different sizes cannot
share a batch tensor, so the taken requests are grouped by size (each group in arrival order,
split further so that no batch holds more than ``max_batch_pixels`` pixels) and every group is
one call of ``run_batch`` on a dedicated thread: the event loop keeps serving meanwhile, and the
model is only ever used by one thread. Result i of a batch goes to the request that supplied
image i; an exception goes to every request of that batch and to no other. Requests that gave up
(their await was cancelled, e.g. by a timeout) before their batch started are left out of it.

With ``max_batch=1`` there is no waiting and every request runs alone: batching off.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

RunBatch = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class BatchStats:
    """Counters since start: forward passes, images in them, the largest batch."""

    batches: int = 0
    images: int = 0
    largest_batch: int = 0


@dataclass
class _Request:
    image: torch.Tensor
    future: asyncio.Future
    arrived: float


class MicroBatcher:
    """Batch concurrent single-image requests onto ``run_batch`` ((B, 3, H, W) -> (B, H, W)).

    Use inside a running event loop: ``await start()``, then ``await submit(image)`` from any
    number of tasks, finally ``await close()``.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch: int = 8,
        max_wait_s: float = 0.01,
        max_batch_pixels: int | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_s >= 0, got {max_batch}, {max_wait_s}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s if max_batch > 1 else 0.0
        self.max_batch_pixels = max_batch_pixels
        self.stats = BatchStats()
        self._waiting: collections.deque[_Request] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepgaze-model")
        self._worker = asyncio.create_task(self._work(), name="deepgaze-batcher")

    async def close(self) -> None:
        """Stop the worker; requests still waiting get a RuntimeError."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        while self._waiting:
            request = self._waiting.popleft()
            if not request.future.done():
                request.future.set_exception(RuntimeError("the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, image: torch.Tensor) -> torch.Tensor:
        """The model's output for one (3, H, W) image, computed in some batch."""
        if self._worker is None or self._worker.done():
            raise RuntimeError("MicroBatcher.submit before start() or after close()")
        loop = asyncio.get_running_loop()
        request = _Request(image, loop.create_future(), loop.time())
        self._waiting.append(request)
        self._arrived.set()
        return await request.future

    # -- worker ----------------------------------------------------------------------------------
    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            taken = await self._take()
            for group in self._groups(taken):
                live = [r for r in group if not r.future.done()]
                if not live:
                    continue
                try:
                    batch = torch.stack([r.image for r in live])
                    outputs = await loop.run_in_executor(self._executor, self.run_batch, batch)
                    if len(outputs) != len(live):
                        raise RuntimeError(f"run_batch returned {len(outputs)} results for {len(live)} images")
                except Exception as error:  # noqa: BLE001 - handed to the requests of this batch
                    for request in live:
                        if not request.future.done():
                            request.future.set_exception(error)
                    continue
                self.stats.batches += 1
                self.stats.images += len(live)
                self.stats.largest_batch = max(self.stats.largest_batch, len(live))
                for request, output in zip(live, outputs):
                    if not request.future.done():
                        request.future.set_result(output.clone())  # its own memory, not a view of the batch

    async def _take(self) -> list[_Request]:
        """Wait for requests, then for the batch window, and take up to max_batch of them."""
        loop = asyncio.get_running_loop()
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._waiting[0].arrived + self.max_wait_s
        while len(self._waiting) < self.max_batch and (remaining := deadline - loop.time()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        taken: list[_Request] = []
        while self._waiting and len(taken) < self.max_batch:
            request = self._waiting.popleft()
            if not request.future.done():  # not given up while waiting
                taken.append(request)
        return taken

    def _groups(self, requests: list[_Request]) -> list[list[_Request]]:
        """Same-size groups in order of first arrival, split to respect max_batch_pixels."""
        by_size: dict[tuple[int, ...], list[list[_Request]]] = {}
        for request in requests:
            chunks = by_size.setdefault(tuple(request.image.shape), [[]])
            pixels = request.image.shape[-2] * request.image.shape[-1]
            if (
                self.max_batch_pixels is not None
                and chunks[-1]
                and (len(chunks[-1]) + 1) * pixels > self.max_batch_pixels
            ):
                chunks.append([])
            chunks[-1].append(request)
        return [chunk for chunks in by_size.values() for chunk in chunks]
