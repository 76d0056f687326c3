"""Writing predictions where other tools read them: pysaliency HDF5 model files, MIT benchmark submissions.

**pysaliency HDF5 model** (read by ``pysaliency.HDF5Model`` for log densities and
``pysaliency.HDF5SaliencyMapModel`` for saliency maps):

* one 2-d (H, W) dataset per image, gzip-compressed, holding the log density or the saliency map;
* named by the image's file name shortened to its minimal unique path (leading folders that all
  files share are dropped; a single file keeps its base name). A ``/`` in a name makes HDF5 groups;
  pysaliency matches names to its stimuli's file names by their trailing path components;
* root attributes ``type = "pysaliency.precomputed_models.predictions"``, ``version = "1.0"``,
  ``downscale_factor = 1`` and ``dtype`` (what recent pysaliency writes; older readers ignore them);
* ``HDF5Model`` refuses a log density whose ``logsumexp`` is outside +-0.01, so that is checked here
  before anything is written.

**MIT benchmark submission**: one grayscale 8-bit image per test image, named by the image's stem
plus ``.jpg`` (or ``.png``), of the image's size. Values as the benchmark's own export: the map minus
its minimum if that is negative, scaled so that the maximum is 255, rounded. For a probabilistic
model pass the density ``exp(log p)`` (optimal for AUC and NSS) or another metric's map.

Both writers take the maps as an iterable, so predictions can be produced one image at a time.
Files appear complete or not at all (`deepgaze_hub.io.atomic`); a submission interrupted midway
keeps the images already written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import h5py
import numpy as np
import torch
from PIL import Image

from ..errors import EvaluationError
from ..io.atomic import atomic_path
from ..visualization.png import save_png

#: Root attribute ``type`` of pysaliency's prediction files.
PYSALIENCY_PREDICTIONS_TYPE = "pysaliency.precomputed_models.predictions"
#: How far ``logsumexp`` of a log density may be from 0 for pysaliency's HDF5Model.
NORMALISATION_TOLERANCE = 0.01


def minimal_unique_names(filenames: Sequence[str | os.PathLike]) -> list[str]:
    """Drop the leading folders all ``filenames`` share (pysaliency's rule); one file: its base name."""
    parts = [PurePosixPath(Path(f).as_posix()).parts for f in filenames]
    if len(parts) <= 1:
        return [p[-1] for p in parts]
    while all(len(p) > 1 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]
    return ["/".join(p) for p in parts]


def export_pysaliency_hdf5(
    path: str | os.PathLike,
    filenames: Sequence[str | os.PathLike],
    maps: Iterable[torch.Tensor | np.ndarray],
    *,
    log_densities: bool = True,
    compression: int = 9,
    dtype: str | np.dtype | None = None,
) -> Path:
    """Write one map per image file to ``path`` in pysaliency's HDF5 model layout.

    ``filenames``: the images' files, in the order of ``maps``; ``maps``: (H, W) natural-log
    densities (``log_densities=True``, checked to be normalised) or saliency maps. ``dtype``: stored
    float type (default: as given). Returns ``path``.
    """
    path = Path(path)
    names = minimal_unique_names(filenames)
    _check_unique(names, "HDF5 dataset names")
    written = 0
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["type"] = PYSALIENCY_PREDICTIONS_TYPE
        handle.attrs["version"] = "1.0"
        handle.attrs["downscale_factor"] = 1
        for name, prediction in zip(names, maps):
            array = _as_map(prediction, name, log_densities)
            if dtype is not None:
                array = array.astype(dtype)
            if written == 0:
                handle.attrs["dtype"] = str(array.dtype)
            handle.create_dataset(name, data=array, compression="gzip", compression_opts=compression)
            written += 1
        _check_count(written, len(names), maps)
    return path


def export_mit_submission(
    directory: str | os.PathLike,
    filenames: Sequence[str | os.PathLike],
    saliency_maps: Iterable[torch.Tensor | np.ndarray],
    *,
    image_format: str = "jpg",
    quality: int = 95,
) -> list[Path]:
    """Write each map as ``directory/<image stem>.<image_format>``, grayscale 8-bit, the map's size.

    ``filenames``: the test images' files (only their stems are used), in the order of
    ``saliency_maps``; every map must already have its image's size. ``image_format``: ``"jpg"``
    (JPEG at ``quality``) or ``"png"`` (lossless). Returns the written paths.
    """
    if image_format not in ("jpg", "png"):
        raise EvaluationError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    stems = [Path(f).stem for f in filenames]
    _check_unique(stems, "submission file names (image stems)")
    directory = Path(directory)
    written: list[Path] = []
    for stem, saliency_map in zip(stems, saliency_maps):
        pixels = saliency_map_to_uint8(_as_map(saliency_map, stem, log_densities=False))
        target = directory / f"{stem}.{image_format}"
        with atomic_path(target) as tmp:
            image = Image.fromarray(pixels, mode="L")
            if image_format == "jpg":
                image.save(tmp, format="JPEG", quality=quality)
            else:
                save_png(image, tmp)
        written.append(target)
    _check_count(len(written), len(stems), saliency_maps)
    return written


def saliency_map_to_uint8(saliency_map: np.ndarray) -> np.ndarray:
    """The benchmark's 8-bit rule: minus a negative minimum, times ``255 / max``, rounded (all 0 if max is 0)."""
    values = np.asarray(saliency_map, dtype=np.float64)
    low = values.min()
    if low < 0:
        values = values - low
    high = values.max()
    if high > 0:
        values = values * (255.0 / high)
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _as_map(prediction, name: str, log_densities: bool) -> np.ndarray:
    array = prediction.detach().cpu().numpy() if isinstance(prediction, torch.Tensor) else np.asarray(prediction)
    if array.ndim != 2 or min(array.shape) < 1:
        raise EvaluationError(f"{name}: expected an (H, W) map, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if np.isnan(array).any() or np.isposinf(array).any() or (not log_densities and np.isneginf(array).any()):
        raise EvaluationError(f"{name}: the map contains NaN or infinite values")
    if log_densities:
        top = array.max()
        log_sum = float(top + np.log(np.exp(array.astype(np.float64) - top).sum())) if np.isfinite(top) else float("-inf")
        if not abs(log_sum) <= NORMALISATION_TOLERANCE:
            raise EvaluationError(
                f"{name}: not a normalised log density (logsumexp = {log_sum:.4g}, must be within "
                f"{NORMALISATION_TOLERANCE} of 0); pass log_densities=False to export saliency maps"
            )
    return array


def _check_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise EvaluationError(f"two images map to the same {what}: {name!r}; rename one of them")
        seen.add(name)


def _check_count(written: int, expected: int, maps) -> None:
    """Fewer maps than names stop early; more are caught by length or by one more item from the iterator."""
    extra = len(maps) > expected if hasattr(maps, "__len__") else next(iter(maps), None) is not None
    if written != expected or extra:
        more = "more" if extra else f"only {written}"
        raise EvaluationError(f"got {more} maps for {expected} image file names; they must match one to one")
