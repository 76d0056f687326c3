"""``deepgaze-hub predict``: log densities and heatmap overlays for image files and folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..errors import DeepGazeError
from ..hub.resolve import load_any
from ..io.atomic import atomic_path, atomic_save_npy
from ..io.images import find_images, load_image, open_image
from ..visualization import density_overlay

FORMATS = ("npy", "png")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict fixation densities for images",
        description=(
            "Write, for every image, its log density (natural log, float32 (H, W) .npy) and a "
            "heatmap overlay with contours splitting the probability mass into quarters (.png). "
            "Folders are searched recursively. Existing outputs are kept, so an interrupted run "
            "resumes where it stopped. Unreadable images are reported and skipped; the exit "
            "status is 1 if any failed."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--model", required=True, help="model directory (save_pretrained) or Hub repo id")
    parser.add_argument("--revision", default=None, help="Hub revision (commit hash) when --model is a repo id")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--format", default="npy,png", help="comma-separated outputs among npy, png (default: both)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    parser.set_defaults(func=run)


def output_stems(paths: list[str]) -> list[tuple[Path, Path]]:
    """(image, output stem) pairs: files keep their name, folders their tree under the folder name."""
    pairs: list[tuple[Path, Path]] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            for image in find_images([entry]):
                pairs.append((image, Path(entry.resolve().name) / image.relative_to(entry).with_suffix("")))
        else:
            pairs.append((entry, Path(entry.stem)))
    seen: dict[Path, Path] = {}
    for image, stem in pairs:
        if stem in seen:
            raise DeepGazeError(f"{image} and {seen[stem]} would both write {stem}.*; predict them in separate runs")
        seen[stem] = image
    return pairs


def run(args: argparse.Namespace) -> int:
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise DeepGazeError(f"--format takes a comma-separated subset of {FORMATS}, got {args.format!r}")
    jobs = output_stems(args.paths)
    if not jobs:
        raise DeepGazeError("no images found in the given paths")
    todo = [
        (image, stem)
        for image, stem in jobs
        if args.overwrite or not all((args.out / f"{stem}.{fmt}").exists() for fmt in formats)
    ]
    print(f"{len(jobs)} images, {len(jobs) - len(todo)} already done; loading model {args.model}", file=sys.stderr)
    if not todo:
        return 0
    model = load_any(args.model, revision=args.revision, map_location=args.device)

    from tqdm.auto import tqdm

    failures: list[str] = []
    for image_path, stem in tqdm(todo, desc="predict", unit="image", file=sys.stderr):
        try:
            pixels = load_image(open_image(image_path), str(image_path))  # (3, H, W), 0-255
            log_density = model.predict(pixels / 255.0)
        except DeepGazeError as error:
            failures.append(str(error))
            tqdm.write(f"skipped: {error}", file=sys.stderr)
            continue
        if "npy" in formats:
            atomic_save_npy(args.out / f"{stem}.npy", log_density.numpy().astype("float32"))
        if "png" in formats:
            overlay = density_overlay(pixels, log_density)
            with atomic_path(args.out / f"{stem}.png") as tmp:
                overlay.save(tmp, format="PNG")
    done = len(todo) - len(failures)
    print(f"wrote {done} of {len(todo)} images to {args.out}; {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0
