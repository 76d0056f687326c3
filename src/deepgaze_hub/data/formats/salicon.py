"""SALICON: per-image ``.mat`` fixation files (2015 and 2017 editions) and their COCO images.

Download layout (both editions)::

    ROOT/images/{train,val,test}/COCO_{split}2014_000000xxxxxx.jpg     640 x 480 px
    ROOT/fixations/{train,val}/COCO_{split}2014_000000xxxxxx.mat      MATLAB v5

Each ``.mat`` holds a struct array ``gaze`` with one entry per observer and the fields
``location`` (mouse samples, N x 2, x then y), ``timestamp`` (N x 1, ms) and ``fixations``
(fixations inferred from the mouse trace, M x 2, x then y); coordinates are 1-based (MATLAB), so
1 is subtracted from both. Many files also carry ``image`` (the name) and ``resolution``
([H W]); when present, the resolution is checked against the image. The two editions differ only
in content: the 2017 mouse samples include positions outside the 640 x 480 image, which the
outside policy handles (pysaliency clips them; the default here drops them and records how many).

SALICON does not identify observers across images: observer ids are the position in each file's
``gaze`` array, so the same id on two images is not the same person. Each observer's samples on
an image form one scanpath in recorded order; mouse samples keep their timestamps (time unit ms),
inferred fixations have none.

The files are distributed by the SALICON authors (salicon.net) through Google Drive after
accepting their terms; this module converts a local copy and does not download anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import DatasetError
from ...io.images import IMAGE_SUFFIXES
from ..dataset import FixationDataset
from ..fixations import Fixations
from ..stimuli import displayed_size
from .common import write_imported
from .matlab import load_mat, points, vector

FIXATION_TYPES = {"fixations": "fixations", "mouse": "location"}


def import_salicon(
    root: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    split: str = "train",
    fixation_type: str = "fixations",
    images: str | os.PathLike | None = None,
    fixations: str | os.PathLike | None = None,
    outside: str = "drop",
    name: str | None = None,
    progress: bool = False,
) -> FixationDataset:
    """Convert one SALICON split into a dataset at ``out``.

    Args:
        root: the SALICON download folder (see module docstring); may be None when both
            ``images`` and ``fixations`` folders are given.
        split: ``"train"`` or ``"val"`` (the test split has no public fixations).
        fixation_type: ``"fixations"`` (inferred fixations) or ``"mouse"`` (raw mouse samples).
        images, fixations: folders overriding ``ROOT/images/SPLIT`` and ``ROOT/fixations/SPLIT``.
        outside: policy for positions outside the image (``"drop"``, ``"clip"``, ``"error"``).
    """
    if fixation_type not in FIXATION_TYPES:
        raise DatasetError(f"SALICON fixation_type must be one of {sorted(FIXATION_TYPES)}, got {fixation_type!r}")
    image_dir, mat_dir = _folders(root, split, images, fixations)
    mat_files = sorted(mat_dir.glob("*.mat"))
    if not mat_files:
        raise DatasetError(f"SALICON import: no .mat fixation files in {mat_dir}")
    by_stem = {p.stem: p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    sources = []
    for mat_path in mat_files:
        if mat_path.stem not in by_stem:
            raise DatasetError(f"{mat_path}: no image named {mat_path.stem}.* in {image_dir}")
        sources.append(by_stem[mat_path.stem])
    sizes, fixations_read = _read_fixations(mat_files, sources, fixation_type)
    metadata = {
        "name": name or f"SALICON {split} ({fixation_type})",
        "time_unit": "ms" if fixation_type == "mouse" else "unknown",
        "salicon": {"split": split, "fixation_type": fixation_type},
        "images_without_fixations": len(by_stem) - len(mat_files),
    }
    return write_imported(
        out, images=sources, image_names=[p.name for p in sources], image_sizes=sizes, fixations=fixations_read,
        outside=outside, source=f"SALICON {mat_dir}", metadata=metadata, progress=progress,
    )


def _folders(root, split: str, images, fixations) -> tuple[Path, Path]:
    """The image folder and the .mat folder of a split (the download layout unless overridden)."""
    if root is None and (images is None or fixations is None):
        raise DatasetError("SALICON import: give the download folder, or both the images and the fixations folder")
    image_dir = Path(images) if images is not None else Path(root) / "images" / split
    mat_dir = Path(fixations) if fixations is not None else Path(root) / "fixations" / split
    for folder, what in ((image_dir, "images"), (mat_dir, "fixation files")):
        if not folder.is_dir():
            raise DatasetError(f"SALICON import: the {what} folder {folder} does not exist")
    return image_dir, mat_dir


def _read_fixations(mat_files: list[Path], images: list[Path], fixation_type: str) -> tuple[np.ndarray, Fixations]:
    """(N, 2) (H, W) image sizes and the 0-based fixations of every observer on every image.

    Image ``i`` is ``images[i]`` with fixations from ``mat_files[i]``; each observer's samples on
    an image form one scanpath, numbered in reading order.
    """
    sizes, parts = [], []
    for index, (mat_path, image_path) in enumerate(zip(mat_files, images)):
        size = displayed_size(image_path, str(image_path))
        for observer, (xy, t) in enumerate(read_salicon_mat(mat_path, fixation_type, size)):
            count = len(xy)
            if count:
                parts.append(
                    Fixations.build(
                        image=np.full(count, index), x=xy[:, 0] - 1.0, y=xy[:, 1] - 1.0,
                        observer=np.full(count, observer), t=t, scanpath=np.full(count, len(parts)), order=np.arange(count),
                    )
                )
        sizes.append(size)
    return np.array(sizes, np.int64).reshape(-1, 2), Fixations.concatenate(parts)


def read_salicon_mat(path: Path, fixation_type: str, size: tuple[int, int] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per observer: ((N, 2) 1-based (x, y) positions, (N,) timestamps or NaN) from one file."""
    data = load_mat(path)
    if "gaze" not in data:
        variables = sorted(k for k in data if not k.startswith("__"))
        raise DatasetError(f"{path}: no variable 'gaze' (variables: {variables}); not a SALICON fixation file")
    gaze = np.asarray(data["gaze"])
    field = FIXATION_TYPES[fixation_type]
    if gaze.dtype.names is None or field not in gaze.dtype.names:
        raise DatasetError(f"{path}: 'gaze' has no field {field!r} (fields: {list(gaze.dtype.names or [])}); a struct array with 'location', 'timestamp' and 'fixations' is expected")
    if size is not None and "resolution" in data:
        resolution = tuple(int(v) for v in np.asarray(data["resolution"]).reshape(-1))
        if resolution != tuple(size):
            raise DatasetError(f"{path}: resolution {resolution} (H, W) differs from the image's size {tuple(size)}")
    observers = []
    for k, entry in enumerate(gaze.reshape(-1)):
        xy = points(entry[field], path, f"gaze({k + 1}).{field}")
        if not np.isfinite(xy).all():
            raise DatasetError(f"{path}: gaze({k + 1}).{field} has NaN or infinite coordinates")
        t = np.full(len(xy), np.nan)
        if fixation_type == "mouse" and "timestamp" in gaze.dtype.names and np.asarray(entry["timestamp"]).size:
            t = vector(entry["timestamp"], len(xy), path, f"gaze({k + 1}).timestamp")
        observers.append((xy, t))
    return observers
