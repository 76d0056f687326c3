"""The engine of ``deepgaze-hub predict`` (`deepgaze_hub.cli.predict` holds its options).

Imported only when the command runs, so that ``deepgaze-hub --help`` and ``predict --help`` do not
load torch. See `deepgaze_hub.cli.predict` for the rules that keep the user's files safe.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DeepGazeError
from ..hub import load
from ..io.atomic import atomic_path, atomic_save_npy, remove_stale_partials
from ..io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, find_images, image_array, is_out_of_memory, load_image, open_image
from ..io.scale import Scaling, pixels_per_degree, resize_image, resize_log_density
from ..visualization import density_overlay, save_png
from ._common import resolve_device, show_progress


def output_stems(
    paths: list[str], out: Path, on_error: Callable[[str], None] | None = None
) -> list[tuple[Path, Path]]:
    """(image, output stem relative to ``out``) pairs: files keep their name, folders their tree
    under the folder's name. ``out`` is never searched; an input folder inside it is refused."""
    given, out = out, out.resolve()
    shown = str(given) if given == out else f"{given} ({out})"
    pairs: list[tuple[Path, Path]] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            resolved = entry.resolve()
            if resolved == out or out in resolved.parents:
                raise DeepGazeError(
                    f"the input folder {entry} is inside the output folder {shown}, so predictions would be "
                    "written among the inputs; choose an --out folder outside the input folders"
                )
            for image in find_images([entry], exclude=[out], on_error=on_error):
                pairs.append((image, Path(resolved.name) / image.relative_to(entry).with_suffix("")))
        else:
            pairs.append((entry, Path(entry.stem)))
    seen: dict[Path, Path] = {}
    for image, stem in pairs:
        if stem in seen:
            raise DeepGazeError(f"{image} and {seen[stem]} would both write {stem}.*; predict them in separate runs")
        seen[stem] = image
    return pairs


def refuse_overwriting_inputs(jobs: list[tuple[Path, Path]], out: Path, formats: list[str]) -> None:
    """Raise if an output file of ``jobs`` resolves to one of the input images."""
    inputs = {image.resolve(): image for image, _ in jobs}
    for _, stem in jobs:
        for fmt in formats:
            target = (out / f"{stem}.{fmt}").resolve()
            if target in inputs:
                raise DeepGazeError(
                    f"--out {out}: the prediction {out / f'{stem}.{fmt}'} would overwrite the input image "
                    f"{inputs[target]}; choose an --out folder that holds none of the inputs"
                )


def run(args: argparse.Namespace) -> int:
    formats: list[str] = args.format
    out: Path = args.out.expanduser()
    if out.exists() and not out.is_dir():
        raise DeepGazeError(f"--out {args.out} is an existing file, not a folder; give a folder for the predictions")
    device = resolve_device(args.device)
    failures: list[str] = []

    def fail(message: str) -> None:
        failures.append(message)
        print(f"skipped: {message}", file=sys.stderr)

    jobs = output_stems(args.paths, out, on_error=fail)
    if not jobs:
        suffixes = " ".join(IMAGE_SUFFIXES)
        raise DeepGazeError(f"no images ({suffixes}) found in {' '.join(args.paths)}; the --out folder is never searched")
    refuse_overwriting_inputs(jobs, out, formats)
    if out.is_dir():
        removed = remove_stale_partials(out)
        if removed:
            print(f"removed {len(removed)} unfinished files left in {out} by an interrupted run", file=sys.stderr)
    todo = [
        (image, stem)
        for image, stem in jobs
        if args.overwrite or not all((out / f"{stem}.{fmt}").exists() for fmt in formats)
    ]
    print(f"{len(jobs)} images, {len(jobs) - len(todo)} already done; loading model {args.model}", file=sys.stderr)
    if not todo:
        return 1 if failures else 0
    model = load(args.model, revision=args.revision, map_location=device)
    model.backbone.precision = args.precision
    predictor = FolderPredictor(model, out, formats, _options(args))
    failed_images = predictor.run(todo)
    failures.extend(predictor.failures)
    print(f"wrote {len(todo) - failed_images} of {len(todo)} images to {out}; {failed_images} failed", file=sys.stderr)
    return 1 if failures else 0


def _options(args: argparse.Namespace) -> PredictOptions:
    ppd = args.pixels_per_degree
    if args.screen is not None:
        try:
            ppd = pixels_per_degree(*args.screen)
        except ValueError as error:
            raise DeepGazeError(f"--screen {' '.join(map(str, args.screen))}: {error}") from None
    return PredictOptions(
        max_pixels=args.max_pixels,
        batch_size=args.batch_size,
        workers=args.workers,
        pixels_per_degree=ppd,
        full_size=args.full_size,
        progress=show_progress(args),
    )


@dataclass(frozen=True)
class PredictOptions:
    """How a folder is predicted: limits, batching, threads and the image scale (see the flags)."""

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    batch_size: int = 8
    workers: int = 2
    pixels_per_degree: float | None = None
    full_size: bool = False
    progress: bool = False  # a progress bar on stderr (the command: a terminal and not --quiet)


@dataclass
class _Prepared:
    """One decoded image: its paths, its pixels at its own size (for the overlay) and as the model sees them."""

    image: Path
    stem: Path
    pixels: np.ndarray | None  # (H, W, 3) uint8, kept only when an overlay is written
    working: torch.Tensor  # (3, h, w) 0-255, the working size
    scaling: Scaling


class FolderPredictor:
    """Predict many image files, keeping the model busy.

    ``workers`` threads decode and resize the next images while the model runs, and resample and
    write finished predictions; consecutive images of the same working size are stacked into
    batches of up to ``batch_size``. A batch that fails is retried one image at a time, so one bad
    image never costs the others; failures are collected in ``failures`` (one line each).
    """

    def __init__(self, model: Any, out: Path, formats: list[str], options: PredictOptions) -> None:
        self.model = model
        self.out = out
        self.formats = formats
        self.options = options
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._progress: Any = None

    def run(self, todo: list[tuple[Path, Path]]) -> int:
        """Predict ``todo`` ((image, output stem) pairs); return how many failed."""
        from tqdm.auto import tqdm

        depth = self.options.batch_size + self.options.workers  # images decoded ahead, writes queued
        with tqdm(total=len(todo), desc="predict", unit="image", file=sys.stderr, disable=not self.options.progress) as self._progress:
            with ThreadPoolExecutor(self.options.workers, thread_name_prefix="decode") as readers, \
                    ThreadPoolExecutor(self.options.workers, thread_name_prefix="write") as writers:  # fmt: skip
                writes: deque[Future] = deque()
                for batch in self._batches(_prefetch(readers, self._prepare, todo, depth)):
                    for item, log_density in zip(batch, self._forward(batch)):
                        if log_density is not None:
                            writes.append(writers.submit(self._write, item, log_density))
                    while len(writes) > depth or (writes and writes[0].done()):
                        writes.popleft().result()  # a DeepGazeError (cannot write) stops the run
                for future in writes:
                    future.result()
        return len(self.failures)

    def _skip(self, message: str) -> None:
        from tqdm.auto import tqdm

        with self._lock:
            self.failures.append(message)
            tqdm.write(f"skipped: {message}", file=sys.stderr)
            self._progress.update(1)
        if self.model.device.type == "cuda":
            torch.cuda.empty_cache()

    def _prepare(self, image_path: Path, stem: Path) -> _Prepared | None:
        """Decode and resize one image (in a reader thread); None when it is skipped."""
        name = str(image_path)
        try:
            image = open_image(image_path, name, max_pixels=self.options.max_pixels)
            try:
                array = image_array(image, name)
            finally:
                image.close()
            pixels = load_image(array, name, max_pixels=self.options.max_pixels)
            scaling = self.model.scaling(
                tuple(pixels.shape[-2:]),
                pixels_per_degree=self.options.pixels_per_degree,
                full_size=self.options.full_size,
            )
            working = resize_image(pixels, scaling.working)
        except DeepGazeError as error:
            self._skip(str(error))
            return None
        except MemoryError:
            self._skip(f"{name}: out of memory decoding the image; downscale it or lower --max-pixels")
            return None
        kept = _overlay_pixels(array, pixels) if "png" in self.formats else None
        return _Prepared(image_path, stem, kept, working, scaling)

    def _batches(self, prepared: Iterator[Future]) -> Iterator[list[_Prepared]]:
        """Consecutive prepared images of one working size, at most ``batch_size`` at a time."""
        batch: list[_Prepared] = []
        for future in prepared:
            item = future.result()
            if item is None:
                continue
            if batch and (len(batch) == self.options.batch_size or item.scaling.working != batch[0].scaling.working):
                yield batch
                batch = []
            batch.append(item)
        if batch:
            yield batch

    def _forward(self, batch: list[_Prepared]) -> list[torch.Tensor | None]:
        """Log densities (h, w) at the working size, one per image; None for one that failed."""
        try:
            return list(self._run_model(batch))
        except (DeepGazeError, MemoryError, RuntimeError) as error:
            if len(batch) > 1:  # find the image that failed; the others still get predicted
                return [self._forward([item])[0] for item in batch]
            name = str(batch[0].image)
            if isinstance(error, DeepGazeError):
                self._skip(f"{name}: {error}")
            elif is_out_of_memory(error):
                size = "x".join(map(str, batch[0].working.shape[:0:-1]))
                self._skip(f"{name}: out of memory predicting it at {size} pixels; downscale it or lower --max-pixels")
            else:
                self._skip(f"{name}: {type(error).__name__}: {error}")
            return [None]

    def _run_model(self, batch: list[_Prepared]) -> torch.Tensor:
        images = torch.stack([item.working for item in batch]).to(self.model.device)
        with torch.inference_mode():
            return self.model(images).float().cpu()

    def _write(self, item: _Prepared, log_density: torch.Tensor) -> None:
        """Resample to the input's size and write the outputs (in a writer thread)."""
        full = resize_log_density(log_density, item.scaling.original)
        try:
            _write(self.out, item.stem, self.formats, full, item.pixels)
        except MemoryError:
            self._skip(f"{item.image}: out of memory writing its outputs; downscale it or lower --max-pixels")
            return
        with self._lock:
            self._progress.update(1)


def _overlay_pixels(array: np.ndarray, pixels: torch.Tensor) -> np.ndarray:
    """The (H, W, 3) uint8 picture an overlay is drawn on (kept while queued: 4x less than float).

    ``array``: the decoded image (`image_array`), ``pixels``: the same as (3, H, W) 0-255 floats.
    An 8-bit RGB decode is that picture already; other images (16-bit, float) are rounded from
    ``pixels``, which for 8-bit data would give the same values.
    """
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] == 3:
        return array
    return pixels.permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


def _prefetch(pool: ThreadPoolExecutor, fn: Callable, items: list[tuple], depth: int) -> Iterator[Future]:
    """Futures of ``fn(*item)`` in order, at most ``depth`` submitted ahead of the consumer."""
    pending: deque[Future] = deque(pool.submit(fn, *item) for item in items[:depth])
    rest = iter(items[depth:])
    while pending:
        future = pending.popleft()
        following = next(rest, None)
        if following is not None:
            pending.append(pool.submit(fn, *following))
        yield future


def _write(out: Path, stem: Path, formats: list[str], log_density: torch.Tensor, pixels: np.ndarray | None) -> None:
    target = out / f"{stem}.npy"
    try:
        if "npy" in formats:
            atomic_save_npy(target, log_density.numpy().astype("float32"))
        if pixels is not None:
            target = out / f"{stem}.png"
            overlay = density_overlay(pixels, log_density)
            with atomic_path(target) as tmp:
                save_png(overlay, tmp)
    except OSError as error:
        raise DeepGazeError(f"cannot write {target}: {error.strerror or error}") from None
