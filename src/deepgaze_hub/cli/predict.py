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
from pathlib import Path

from ._common import DEFAULT_MAX_PIXELS, PRECISIONS, add_device_argument, add_model_argument, positive_int

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
    return positive_int(text.replace("_", ""), "a positive number of pixels or 'none'")


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
    add_model_argument(parser)
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
        "--batch-size", type=positive_int, default=8, help="same-size images per forward pass (default: 8)"
    )
    speed.add_argument(
        "--workers", type=positive_int, default=2,
        help="threads decoding the next images and writing finished ones while the model runs (default: 2)",
    )  # fmt: skip
    speed.add_argument(
        "--precision", choices=PRECISIONS, default="float32",
        help="precision of the backbone: float32 (default, exact), bfloat16 (CPU with AVX512-BF16/AMX, "
        "or GPU; about 0.01 bits/fixation less information gain) or float16 (GPU only)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ._predict_run import run as run_prediction  # torch and the model load only now

    return run_prediction(args)
