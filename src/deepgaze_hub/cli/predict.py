"""``deepgaze-hub predict``: log densities and heatmap overlays for image files and folders.

Rules that keep the user's files safe:

* a prediction is never written onto an input: a run whose output path would resolve to one of
  its input images is refused before anything is written, and so is an input folder that lies
  inside (or is) the ``--out`` folder;
* the ``--out`` folder is never searched for input images, even when it lies inside an input
  folder, so a rerun never predicts the previous run's overlays;
* every output is written atomically (`deepgaze_hub.io.atomic`); temporary ``*.partial`` files
  that a killed run left under ``--out`` are removed by the next run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import DeepGazeError
from ..hub import MODEL_HELP, load
from ..io.atomic import atomic_path, atomic_save_npy, remove_stale_partials
from ..io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, find_images, load_image, open_image
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
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes a positive number of pixels or 'none', got {text!r}")
    return value


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
            "skipped; the exit status is 1 if any failed."
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

    from tqdm.auto import tqdm

    failed_images = 0

    def skip(message: str) -> None:
        nonlocal failed_images
        failed_images += 1
        failures.append(message)
        tqdm.write(f"skipped: {message}", file=sys.stderr)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    for image_path, stem in tqdm(todo, desc="predict", unit="image", file=sys.stderr):
        name = str(image_path)
        try:
            image = open_image(image_path, name, max_pixels=args.max_pixels)
            log_density = model.predict(image, max_pixels=args.max_pixels)  # (H, W), errors name the file
            pixels = load_image(image, name, max_pixels=args.max_pixels) if "png" in formats else None
        except DeepGazeError as error:
            skip(str(error))
            continue
        except (MemoryError, RuntimeError) as error:  # anything else this one image caused
            skip(f"{name}: {type(error).__name__}: {error}")
            continue
        try:
            _write(out, stem, formats, log_density, pixels)
        except MemoryError:
            skip(f"{name}: out of memory writing its outputs; downscale it or lower --max-pixels")
    done = len(todo) - failed_images
    print(f"wrote {done} of {len(todo)} images to {out}; {failed_images} failed", file=sys.stderr)
    return 1 if failures else 0


def _write(out: Path, stem: Path, formats: list[str], log_density: torch.Tensor, pixels: torch.Tensor | None) -> None:
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
