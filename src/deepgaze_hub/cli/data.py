"""``deepgaze-hub data``: import, inspect, export and generate fixation datasets; fit baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import EMBEDDED, OUTSIDE_POLICIES, deferred

DATASET_HELP = f"dataset file (.h5), or {EMBEDDED!r} for the default synthetic dataset"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="import, inspect and export fixation datasets; fit centre bias and gold standard",
        description="Fixation datasets: one HDF5 file with images and fixations (see deepgaze_hub.data).",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    _register_info(actions)
    _register_import(actions)
    _register_export(actions)
    _register_synthetic(actions)
    _register_default(actions)
    _register_folds(actions)
    _register_baselines(actions)


def _register_info(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("info", help="summarise a dataset file")
    p.add_argument("dataset", help=DATASET_HELP)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=deferred("_data_run", "run_info"))


def _register_import(actions: argparse._SubParsersAction) -> None:
    importer = actions.add_parser("import", help="convert data from another format into a dataset file")
    formats = importer.add_subparsers(dest="format", metavar="FORMAT", required=True)
    _register_import_pysaliency(formats)
    _register_import_salicon(formats)
    _register_import_csv(formats)
    _register_import_mit1003(formats)


def _register_import_pysaliency(formats: argparse._SubParsersAction) -> None:
    p = formats.add_parser("pysaliency", help="pysaliency stimuli + fixations HDF5 files")
    p.add_argument("--stimuli", type=Path, required=True, help="FileStimuli or Stimuli .hdf5")
    p.add_argument("--fixations", type=Path, required=True, help="Fixations, FixationTrains or ScanpathFixations .hdf5")
    p.add_argument("--time-unit", default="unknown", help="unit of t and durations in the files (pysaliency does not record it)")
    _output_options(p, outside=True)
    p.set_defaults(func=deferred("_data_run", "run_import"))


def _register_import_salicon(formats: argparse._SubParsersAction) -> None:
    p = formats.add_parser("salicon", help="SALICON per-image .mat files (2015 or 2017 edition)")
    p.add_argument("root", type=Path, nargs="?", help="download folder with images/ and fixations/")
    p.add_argument("--split", default="train", choices=("train", "val"), help="which SALICON split to import (default: train)")
    p.add_argument("--type", dest="fixation_type", default="fixations", choices=("fixations", "mouse"), help="inferred fixations or raw mouse samples (default: fixations)")
    p.add_argument("--images", type=Path, help="image folder (default ROOT/images/SPLIT)")
    p.add_argument("--fixation-dir", type=Path, help="folder of .mat files (default ROOT/fixations/SPLIT)")
    _output_options(p, outside=True)
    p.set_defaults(func=deferred("_data_run", "run_import"))


def _register_import_csv(formats: argparse._SubParsersAction) -> None:
    p = formats.add_parser(
        "csv",
        help="a folder of images and a CSV table of fixations",
        description=(
            "One row per fixation. Default columns: image (file name relative to --images), x, y (0-based "
            "pixels, x = column), observer; optional t, duration, scanpath, order. Other numeric columns are "
            "kept as extra fields. Rename with --column FIELD=HEADER (FIELD= for a field the table lacks)."
        ),
    )
    p.add_argument("table", type=Path, help="the CSV file")
    p.add_argument("--images", type=Path, required=True, help="folder the image column is relative to")
    p.add_argument("--column", action="append", default=[], metavar="FIELD=HEADER", help="header of a field (repeatable)")
    p.add_argument("--one-based", action="store_true", help="coordinates count from 1 (MATLAB); 1 is subtracted")
    p.add_argument("--time-unit", default="unknown", help="unit of the t and duration columns, e.g. ms")
    p.add_argument("--allow-outside-images", action="store_true", help="accept image paths that are absolute or lead out of --images")
    p.add_argument("--drop-duplicates", action="store_true", help="remove rows that repeat an earlier row exactly (default: keep and count them)")
    _output_options(p, outside=True)
    p.set_defaults(func=deferred("_data_run", "run_import"))


def _register_import_mit1003(formats: argparse._SubParsersAction) -> None:
    p = formats.add_parser("mit1003", help="MIT1003: a pysaliency export or the output of Judd's MATLAB code")
    p.add_argument("root", type=Path, help="folder with MIT1003/ (pysaliency) or ALLSTIMULI/ and extracted/")
    p.add_argument("--extracted", type=Path, help="folder of <image>_<observer>.mat files (default ROOT/extracted)")
    p.add_argument("--include-initial-fixation", action="store_true", help="keep the first (forced central) fixation")
    _output_options(p, outside=False)
    p.set_defaults(func=deferred("_data_run", "run_import"))


def _register_export(actions: argparse._SubParsersAction) -> None:
    exporter = actions.add_parser("export", help="write a dataset in another format")
    targets = exporter.add_subparsers(dest="format", metavar="FORMAT", required=True)
    p = targets.add_parser("pysaliency", help="FileStimuli + Fixations/FixationTrains HDF5 files")
    p.add_argument("dataset", help=DATASET_HELP)
    p.add_argument("--stimuli", type=Path, required=True, help="stimuli .hdf5 to write (images go beside it)")
    p.add_argument("--fixations", type=Path, required=True, help="fixations .hdf5 to write")
    p.set_defaults(func=deferred("_data_run", "run_export"))
    p = targets.add_parser("csv", help="images/ folder + fixations.csv")
    p.add_argument("dataset", help=DATASET_HELP)
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.set_defaults(func=deferred("_data_run", "run_export"))


def _register_synthetic(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("synthetic", help="generate a synthetic dataset with known true densities")
    p.add_argument("--out", type=Path, required=True, help="dataset file to write (.h5)")
    p.add_argument("--images", type=int, default=40, help="number of images (default 40)")
    p.add_argument("--size", type=_pair("x"), default=(192, 256), help="image size HxW in pixels (default 192x256)")
    p.add_argument("--observers", type=int, default=8, help="observers per image (default 8)")
    p.add_argument("--fixations", type=_pair("-"), default=(6, 12), help="fixations per observer and image, LOW-HIGH (default 6-12)")
    p.add_argument("--seed", type=int, default=0, help="random seed of images and fixations (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=deferred("_data_run", "run_synthetic"))


def _register_default(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("default", help="print the path of the default synthetic dataset (generated on first use)")
    p.add_argument("--cache-dir", type=Path, help="cache folder (default $DEEPGAZE_HUB_CACHE or ~/.cache/deepgaze-hub)")
    p.set_defaults(func=deferred("_data_run", "run_default"))


def _register_folds(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("folds", help="image-wise k-fold assignment (stable under re-import)")
    p.add_argument("dataset", help=DATASET_HELP)
    p.add_argument("--k", type=int, default=10, help="number of folds (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image-to-fold assignment (default 0)")
    p.add_argument("--out", type=Path, help="write image,id,fold rows to this CSV (default: print counts only)")
    p.set_defaults(func=deferred("_data_run", "run_folds"))


def _register_baselines(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "baselines",
        help="fit the centre bias (and the gold standard) and report their log-likelihoods",
        description=(
            "Fit the centre bias by leave-one-image-out cross-validation and, with --gold, the gold standard "
            "(leave-one-observer-out). Log-likelihoods are reported in bits per fixation relative to a uniform "
            "density. --template writes the (rows, cols) log-density template for DeepGaze.set_centerbias."
        ),
    )
    p.add_argument("dataset", help=DATASET_HELP)
    p.add_argument("--out", type=Path, help="save the fitted centre bias (.npz, CenterBiasModel.load)")
    p.add_argument("--template", type=Path, help="save the centre-bias template as float32 .npy")
    p.add_argument("--shape", type=_pair("x"), default=(256, 256), help="template rows x cols (default 256x256, the model's)")
    p.add_argument("--fold", type=int, help="fit on the training images of this fold only")
    p.add_argument("--k", type=int, default=10, help="number of folds for --fold")
    p.add_argument("--gold", action="store_true", help="also fit the gold standard")
    p.add_argument("--device", default="cpu", help="torch device of the centre-bias and gold-standard fits (default: cpu)")
    p.set_defaults(func=deferred("_data_run", "run_baselines"))


def _output_options(parser: argparse.ArgumentParser, *, outside: bool) -> None:
    parser.add_argument("--out", type=Path, required=True, help="dataset file to write (.h5)")
    parser.add_argument("--name", help="dataset name stored in the file")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    if outside:
        parser.add_argument(
            "--outside", default="drop", choices=OUTSIDE_POLICIES,
            help="fixations outside their image: drop them, clip them to the border, or fail (default drop)",
        )




def _pair(separator: str):
    """An argparse type: two whole numbers separated by ``separator`` (a usage error otherwise)."""

    def parse(text: str) -> tuple[int, int]:
        try:
            first, second = (int(part) for part in text.lower().split(separator))
            return first, second
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes two whole numbers separated by {separator!r}, got {text!r}") from None

    return parse
