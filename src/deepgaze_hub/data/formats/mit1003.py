"""MIT1003 (Judd et al. 2009): find and convert the fixations in a user's download folder.

The raw MIT1003 download (``ALLSTIMULI.zip``: 1003 JPEG images; ``DATA.zip``: one folder of raw
240 Hz eye-tracker recordings per observer, 15 observers) does **not** contain fixations: they are
extracted by Judd's MATLAB code (``DatabaseCode.zip``, ``checkFixations``), which needs MATLAB or
Octave. This module does not re-implement that algorithm. It converts, in this order of preference:

1. a **pysaliency export** of MIT1003 (``stimuli.hdf5`` + ``fixations.hdf5``, e.g. the cache that
   ``pysaliency.get_mit1003(location=ROOT)`` writes to ``ROOT/MIT1003``, or
   ``ROOT/MIT1003_initial_fix`` with the initial fixation);
2. the **per-recording output of Judd's code**: ``ROOT/ALLSTIMULI/*.jpeg`` plus one MATLAB file per
   image and observer named ``<image file>_<observer>.mat`` (in ``ROOT/extracted``, as pysaliency's
   ``extract_fixations.m`` writes them) with the variables ``fixations`` (N x 2, x then y, pixels),
   ``starts`` (onset, in 240 Hz samples) and ``durations`` (ms).

For (2) the conversion follows the published dataset (pysaliency's ``get_mit1003``) so numbers
stay comparable: the first recorded fixation (the forced central fixation) is dropped unless
``include_initial_fixation``; fixations not strictly inside the image (0 < x < W, 0 < y < H,
coordinates kept as Judd's code reports them) are dropped and counted (this includes blinks);
onsets become seconds (starts / 240) and durations seconds (ms / 1000). Each observer's fixations on
an image form one scanpath; observers are named after their ``DATA`` folders.

With only the raw ``DATA`` folder, the import stops with instructions for the extraction step.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import DatasetError
from ..dataset import FixationDataset
from ..fixations import Fixations
from ..stimuli import displayed_size
from .common import write_imported
from .matlab import load_mat, points, vector
from .pysaliency import import_pysaliency

EYE_TRACKER_RATE = 240.0  # Hz


def import_mit1003(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    include_initial_fixation: bool = False,
    extracted: str | os.PathLike | None = None,
    name: str | None = None,
    progress: bool = False,
) -> FixationDataset:
    """Convert MIT1003 found under ``root`` (see module docstring) into a dataset at ``out``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"MIT1003 import: {root} is not a folder")
    cache_names = ("MIT1003_initial_fix", "MIT1003_initial_fix_consistent") if include_initial_fixation else ("MIT1003",)
    for folder in [root / cache for cache in cache_names] + [root]:
        if (folder / "stimuli.hdf5").is_file() and (folder / "fixations.hdf5").is_file():
            return import_pysaliency(
                folder / "stimuli.hdf5", folder / "fixations.hdf5", out, name=name or "MIT1003", time_unit="s", progress=progress
            )
    stimuli_dir = root / "ALLSTIMULI"
    extracted_dir = Path(extracted) if extracted is not None else root / "extracted"
    if stimuli_dir.is_dir() and extracted_dir.is_dir():
        return _convert_extracted(stimuli_dir, extracted_dir, out, include_initial_fixation, name, progress)
    found = [p.name for p in (root / "ALLSTIMULI", root / "DATA", root / "extracted") if p.is_dir()]
    raise DatasetError(
        f"MIT1003 import: no fixations under {root} (found folders: {found or 'none'}). MIT1003's raw "
        "eye-tracking data (DATA/) must first be turned into fixations by Judd's MATLAB code, which "
        "needs MATLAB or Octave: either run `pysaliency.get_mit1003(location=ROOT)` once (it writes "
        "ROOT/MIT1003/stimuli.hdf5 and fixations.hdf5), or run DatabaseCode's checkFixations for every "
        "image and observer and save `fixations`, `starts`, `durations` to ROOT/extracted/<image>_<observer>.mat. "
        "Then run this import again."
    )


def _convert_extracted(stimuli_dir: Path, extracted_dir: Path, out, include_initial: bool, name, progress) -> FixationDataset:
    images = sorted(p for p in stimuli_dir.iterdir() if p.suffix.lower() in (".jpeg", ".jpg") and p.is_file())
    if not images:
        raise DatasetError(f"MIT1003 import: no .jpeg images in {stimuli_dir}")
    mats = sorted(p.name for p in extracted_dir.glob("*.mat"))
    recordings: dict[str, list[tuple[str, Path]]] = {}
    for image in images:
        prefix = f"{image.name}_"
        recordings[image.name] = [(m[len(prefix):-4], extracted_dir / m) for m in mats if m.startswith(prefix)]
    observers = sorted({observer for files in recordings.values() for observer, _ in files})
    if not observers:
        raise DatasetError(f"MIT1003 import: no <image>_<observer>.mat files for the images of {stimuli_dir} in {extracted_dir}")
    observer_id = {observer: i for i, observer in enumerate(observers)}
    first = 0 if include_initial else 1
    sizes, parts, dropped, scanpath = [], [], 0, 0
    for index, image in enumerate(images):
        height, width = displayed_size(image, str(image))
        sizes.append((height, width))
        for observer, mat_path in recordings[image.name]:
            data = load_mat(mat_path)
            missing = [k for k in ("fixations", "starts", "durations") if k not in data]
            if missing:
                raise DatasetError(f"{mat_path}: lacks the variables {missing}; expected the output of Judd's checkFixations")
            xy = points(data["fixations"], mat_path, "fixations")
            starts = vector(data["starts"], len(xy), mat_path, "starts")
            durations = vector(data["durations"], len(xy), mat_path, "durations")
            keep = np.arange(len(xy)) >= first
            valid = (xy[:, 0] > 0) & (xy[:, 0] < width) & (xy[:, 1] > 0) & (xy[:, 1] < height)
            dropped += int((keep & ~valid).sum())
            keep &= valid
            count = int(keep.sum())
            if count:
                parts.append(
                    Fixations.build(
                        image=np.full(count, index), x=xy[keep, 0], y=xy[keep, 1],
                        observer=np.full(count, observer_id[observer]), t=starts[keep] / EYE_TRACKER_RATE,
                        duration=durations[keep] / 1000.0, scanpath=np.full(count, scanpath), order=np.arange(count),
                    )
                )
                scanpath += 1
    metadata = {
        "name": name or "MIT1003",
        "time_unit": "s",
        "mit1003": {"include_initial_fixation": include_initial},
        "outside_policy": "drop unless strictly inside (as published)",
        "outside_count": dropped,
    }
    return write_imported(
        out, images=images, image_names=[p.name for p in images], image_sizes=np.array(sizes, np.int64),
        fixations=Fixations.concatenate(parts), outside="error", source=f"MIT1003 {extracted_dir}",
        metadata=metadata, observer_names=observers, progress=progress,
    )
