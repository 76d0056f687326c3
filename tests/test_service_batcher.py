"""MicroBatcher on its own: grouping, per-request results, errors, cancellation, off-loop runs."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from deepgaze_hub.service.batcher import MicroBatcher


class Recorder:
    """A run_batch that answers image i with a map of its own content and records every batch."""

    def __init__(self, delay: float = 0.0, fail_on_size: tuple[int, int] | None = None) -> None:
        self.batches: list[torch.Tensor] = []
        self.threads: set[int] = set()
        self.delay = delay
        self.fail_on_size = fail_on_size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.threads.add(threading.get_ident())
        self.batches.append(images.clone())
        time.sleep(self.delay)
        if self.fail_on_size == tuple(images.shape[-2:]):
            raise ValueError(f"cannot do {tuple(images.shape[-2:])}")
        return images.sum(dim=1) * 2.0  # (B, H, W), depends on the image only


def image(value: float, size: tuple[int, int]) -> torch.Tensor:
    return torch.full((3, *size), float(value))


def run(coroutine):
    return asyncio.run(coroutine)


async def started(recorder: Recorder, **kwargs) -> MicroBatcher:
    batcher = MicroBatcher(recorder, **kwargs)
    await batcher.start()
    return batcher


def test_groups_by_size_in_arrival_order_and_answers_each_request_with_its_own_result():
    sizes = [(4, 6), (5, 5), (4, 6), (4, 6), (5, 5), (4, 6)]
    images = [image(i + 1, size) for i, size in enumerate(sizes)]
    recorder = Recorder()

    async def main():
        batcher = await started(recorder, max_batch=4, max_wait_s=0.05)
        try:
            results = await asyncio.gather(*(batcher.submit(x) for x in images))
        finally:
            await batcher.close()
        return results, batcher.stats

    results, stats = run(main())
    for x, result in zip(images, results):
        torch.testing.assert_close(result, x.sum(dim=0) * 2.0, rtol=0, atol=0)
    # first window: requests 0-3 -> (4,6) x3 and (5,5) x1; second window: requests 4-5
    assert [tuple(b.shape) for b in recorder.batches] == [(3, 3, 4, 6), (1, 3, 5, 5), (1, 3, 5, 5), (1, 3, 4, 6)]
    assert [b[:, 0, 0, 0].tolist() for b in recorder.batches] == [[1.0, 3.0, 4.0], [2.0], [5.0], [6.0]]
    assert (stats.batches, stats.images, stats.largest_batch) == (4, 6, 3)


def test_max_batch_one_runs_every_request_alone_without_waiting():
    recorder = Recorder()

    async def main():
        batcher = await started(recorder, max_batch=1, max_wait_s=5.0)  # the window is ignored
        start = time.monotonic()
        try:
            await asyncio.gather(*(batcher.submit(image(i, (3, 3))) for i in range(5)))
        finally:
            await batcher.close()
        return time.monotonic() - start

    elapsed = run(main())
    assert [len(b) for b in recorder.batches] == [1] * 5
    assert elapsed < 2.5


def test_max_batch_pixels_splits_same_size_groups():
    recorder = Recorder()

    async def main():
        batcher = await started(recorder, max_batch=8, max_wait_s=0.05, max_batch_pixels=2 * 10 * 10)
        try:
            await asyncio.gather(*(batcher.submit(image(i, (10, 10))) for i in range(5)))
        finally:
            await batcher.close()

    run(main())
    assert [len(b) for b in recorder.batches] == [2, 2, 1]


def test_an_error_reaches_only_the_requests_of_its_batch():
    recorder = Recorder(fail_on_size=(7, 7))

    async def main():
        batcher = await started(recorder, max_batch=8, max_wait_s=0.05)
        try:
            return await asyncio.gather(
                batcher.submit(image(1, (7, 7))),
                batcher.submit(image(2, (3, 3))),
                batcher.submit(image(3, (7, 7))),
                return_exceptions=True,
            )
        finally:
            await batcher.close()

    first, second, third = run(main())
    assert isinstance(first, ValueError) and isinstance(third, ValueError)
    torch.testing.assert_close(second, image(2, (3, 3)).sum(dim=0) * 2.0)


def test_requests_that_gave_up_are_left_out_and_the_loop_stays_free_while_the_model_runs():
    recorder = Recorder(delay=0.3)

    async def main():
        batcher = await started(recorder, max_batch=4, max_wait_s=0.0)
        try:
            busy = asyncio.ensure_future(batcher.submit(image(1, (3, 3))))
            await asyncio.sleep(0.05)  # the first batch is now in the model thread
            given_up = asyncio.ensure_future(batcher.submit(image(2, (3, 3))))
            kept = asyncio.ensure_future(batcher.submit(image(3, (3, 3))))
            await asyncio.sleep(0.01)  # both wait behind the running batch
            given_up.cancel()  # e.g. its request timed out
            ticks = 0
            while not busy.done():  # the event loop keeps running during the forward pass
                await asyncio.sleep(0.01)
                ticks += 1
            await kept
        finally:
            await batcher.close()
        return ticks

    ticks = run(main())
    assert ticks >= 5
    assert [b[:, 0, 0, 0].tolist() for b in recorder.batches] == [[1.0], [3.0]]
    assert threading.get_ident() not in recorder.threads


def test_submit_needs_a_started_batcher_and_close_fails_waiting_requests():
    async def main():
        batcher = MicroBatcher(Recorder(delay=0.2), max_batch=1)
        with pytest.raises(RuntimeError, match="before start"):
            await batcher.submit(image(0, (2, 2)))
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(image(1, (2, 2))))
        second = asyncio.ensure_future(batcher.submit(image(2, (2, 2))))
        await asyncio.sleep(0.05)
        await batcher.close()
        with pytest.raises(RuntimeError, match="shutting down"):
            await second
        first.cancel()

    run(main())


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Recorder(), max_batch=0)
