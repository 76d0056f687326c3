"""``deepgaze-hub predict``: log densities and heatmap overlays for image files and folders.

Rules that keep the user's files safe:

* a prediction is never written onto an input: a run whose output path would resolve to one of
  its input images is refused before anything is written, and so is an input folder that lies
  inside (or is) the ``--out`` folder;
* the ``--out`` folder is never searched for input images, even when it lies inside an input
  folder, so a rerun never predicts the previous run's overlays;
* every output is written atomically (`deepgaze_hub.io.atomic`); temporary ``*.partial`` files
  that a killed run left under ``--out`` are removed by the next run.

Speed: reader threads decode and resize the next images while the model runs, writer threads
resample and write finished ones, and same-size images share a forward pass (`FolderPredictor`).
Scale: images larger than the model's working size are predicted at that size and their density
is returned at the image's own size (`deepgaze_hub.io.scale`).
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
from ..hub import MODEL_HELP, load
from ..io.atomic import atomic_path, atomic_save_npy, remove_stale_partials
from ..io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, find_images, is_out_of_memory, load_image, open_image
from ..io.scale import Scaling, pixels_per_degree, resize_image, resize_log_density
from ..model.backbone import PRECISIONS
from ..visualization import density_overlay
from ._common import add_device_argument, resolve_device

FORMATS = ("npy", "png")


def _formats(text: str) -> list[str]:
    """argparse ``type=`` for --format: a non-empty comma-separated subset of FORMATS."""
    formats = list(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    if not formats or set(formats) - set(FORMATS):
        raise argparse.ArgumentTypeError(f"takes a comma-separated subset of {', '.join(FORMATS)}, got {text!r}")
    return formats


def _max_pixels(text: str) -> int | None:
    """argparse ``type=`` for --max-pixels: a positive number of pixels, or ``none`` for no limit."""
    if text.strip().lower() == "none":
        return None
    return _positive_int(text.replace("_", ""), "a positive number of pixels or 'none'")


def _positive_int(text: str, what: str = "a positive integer") -> int:
    """argparse ``type=``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes {what}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"takes a positive number, got {text!r}")
    return value


def _add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    scale = parser.add_argument_group(
        "image scale",
        "By default an image larger than the model's working size (about 1024 pixels on the long side "
        "for DeepGaze II, trained at 35 pixels per degree) is predicted at that size and its density "
        "resampled to the image's size (log space, renormalised); smaller images are predicted as they are.",
    )
    exclusive = scale.add_mutually_exclusive_group()
    exclusive.add_argument(
        "--full-size", action="store_true", help="predict every image at its own size (slow for large photos)"
    )
    exclusive.add_argument(
        "--pixels-per-degree", type=_positive_float, default=None, metavar="PPD",
        help="pixels per degree of visual angle of the images as viewed; they are rescaled so that the "
        "model sees its training scale",
    )  # fmt: skip
    exclusive.add_argument(
        "--screen", type=_positive_float, nargs=3, default=None, metavar=("WIDTH_PX", "WIDTH_CM", "DISTANCE_CM"),
        help="the viewing geometry instead of --pixels-per-degree: screen width in pixels and in cm, "
        "viewing distance in cm (ppd = px/cm * 2 * distance * tan(0.5 deg))",
    )  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict fixation densities for images",
        description=(
            "Write, for every image, its log density (natural log, float32 (H, W) .npy) and a "
            "heatmap overlay with contours splitting the probability mass into quarters (.png). "
            "Folders are searched recursively, except the --out folder. Existing outputs are "
            "kept, so an interrupted run resumes where it stopped. Outputs never replace an input: "
            "a run that would do so is refused. Unreadable or too large images are reported and "
            "skipped; the exit status is 1 if any failed. Images larger than the model's working size "
            "are predicted at that size and their density returned at their own size (see 'image scale')."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--model", required=True, help=f"the model: {MODEL_HELP}")
    parser.add_argument("--revision", default=None, help="Hub revision (commit hash) when --model is hf-hub:OWNER/NAME")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; must not hold the input folders)")
    parser.add_argument(
        "--format", default=list(FORMATS), type=_formats, help="comma-separated outputs among npy, png (default: both)"
    )
    parser.add_argument(
        "--max-pixels",
        type=_max_pixels,
        default=DEFAULT_MAX_PIXELS,
        help=(
            "refuse images larger than this many pixels (width x height), checked from the file "
            f"header before decoding (default: {DEFAULT_MAX_PIXELS}; 'none': no limit)"
        ),
    )
    add_device_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    _add_scale_arguments(parser)
    speed = parser.add_argument_group("speed")
    speed.add_argument(
        "--batch-size", type=_positive_int, default=8, help="same-size images per forward pass (default: 8)"
    )
    speed.add_argument(
        "--workers", type=_positive_int, default=2,
        help="threads decoding the next images and writing finished ones while the model runs (default: 2)",
    )  # fmt: skip
    speed.add_argument(
        "--precision", choices=PRECISIONS, default="float32",
        help="precision of the backbone: float32 (default, exact), bfloat16 (CPU with AVX512-BF16/AMX, "
        "or GPU; about 0.01 bits/fixation less information gain) or float16 (GPU only)",
    )  # fmt: skip
    parser.set_defaults(func=run)


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
    )


@dataclass(frozen=True)
class PredictOptions:
    """How a folder is predicted: limits, batching, threads and the image scale (see the flags)."""

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    batch_size: int = 8
    workers: int = 2
    pixels_per_degree: float | None = None
    full_size: bool = False


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
        with tqdm(total=len(todo), desc="predict", unit="image", file=sys.stderr) as self._progress:
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
                pixels = load_image(image, name, max_pixels=self.options.max_pixels)
            finally:
                image.close()
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
        kept = _as_uint8(pixels) if "png" in self.formats else None  # 4x less memory while queued
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


def _as_uint8(pixels: torch.Tensor) -> np.ndarray:
    """(3, H, W) 0-255 float pixels as the (H, W, 3) uint8 array an overlay is drawn on."""
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
                overlay.save(tmp, format="PNG")
    except OSError as error:
        raise DeepGazeError(f"cannot write {target}: {error.strerror or error}") from None
