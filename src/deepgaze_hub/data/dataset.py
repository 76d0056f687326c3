"""`FixationDataset`: images and the fixations made on them, in one versioned HDF5 file.

Design decisions
----------------
* **Images are embedded as their original encoded bytes** (JPEG, PNG, ... exactly as imported),
  not referenced by path. One file is the whole dataset: it can be moved, copied to another machine
  or uploaded without breaking links; every image is decoded and hashed once at write time, so a
  truncated or corrupt image fails the import instead of a training run hours later; and the bytes
  come out again unchanged, which makes exporting lossless. The cost is disk space equal to the
  image files (no re-encoding, so no loss and no growth). Arrays without a file (pysaliency
  ``Stimuli``, synthetic scenes) are stored as lossless PNG.
* **Stable image ids** are content hashes of the decoded pixels (`stimuli.pixel_id`), so they
  survive re-imports in another order or from another format; folds are keyed on them
  (`deepgaze_hub.data.splits`).
* **Fixations outside their image** never enter a stored dataset: importers apply an explicit
  policy (drop / clip / error, `fixations.apply_outside_policy`) and record how many were affected
  in the metadata (``outside_policy``, ``outside_count``); `open` re-validates every fixation.
* **Nothing read from a file is trusted.** `open` checks every attribute, array shape and type,
  count and image size (against the stored image's header) before using it
  (`deepgaze_hub.data.layout`), so a damaged or tampered file is a `DatasetError` naming the file,
  the field and the image, never a huge allocation or a traceback.
* **Lazy, process-safe reading.** `open` reads the small tables (sizes, ids, names, fixations) and
  closes the file again. Image bytes and true densities are read on demand through an HDF5 handle
  that is opened *per process* (re-opened after a fork) and dropped when pickled, so a dataset can
  be handed to ``DataLoader(num_workers > 0)``. The cached fixation table is not pickled either;
  workers read just the rows of the images they load.
* **Atomic writes.** `create` writes to a temporary file beside the target and renames it when
  complete: a failed or interrupted import leaves nothing behind.

HDF5 layout, format version 1
-----------------------------
Root attributes: ``format = "deepgaze-hub fixation dataset"``, ``format_version = 1``, ``metadata``
= a JSON object (``name``, ``description``, ``source``, ``time_unit``, ``created_with`` and importer
counts such as ``outside_policy`` / ``outside_count``).

=========================  =====================  ================================================
path                       shape, type            content
=========================  =====================  ================================================
``images/encoded``         (N,) vlen uint8        the encoded image file, byte for byte
``images/name``            (N,) vlen utf-8        unique file name (relative path) of each image
``images/id``              (N,) vlen utf-8        content id (16 hex digits of a pixel SHA-256)
``images/size``            (N, 2) int64           (H, W) as displayed (EXIF orientation applied)
``fixations/image``        (F,) int64             image index; rows are sorted by it (stable)
``fixations/x``, ``y``     (F,) float64           column, row in pixels; 0 <= x < W, 0 <= y < H
``fixations/observer``     (F,) int64             observer id >= 0
``fixations/t``            (F,) float64           onset, in ``time_unit``; NaN = unknown
``fixations/duration``     (F,) float64           duration, in ``time_unit``; NaN = unknown
``fixations/scanpath``     (F,) int64             viewing-sequence id, -1 = none
``fixations/order``        (F,) int64             position in the sequence, -1 = none
``fixations/offsets``      (N + 1,) int64         image i owns rows ``offsets[i]:offsets[i+1]``
``fixations/extra/<name>`` (F,) float64           optional further per-fixation values
``observers/name``         (O,) vlen utf-8        optional: the name of observer id o is row o
``truth/<i>``              (H, W) float32         optional: true log density of image i
=========================  =====================  ================================================

A reader refuses files with a higher ``format_version`` than it knows. Adding optional datasets
does not change the version; changing the meaning of an existing one does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DatasetError
from ..io.atomic import atomic_path
from ..io.images import load_image, open_image
from ..version import __version__
from .fixations import FIELDS, Fixations, check_image_indices, validate_fixations
from .layout import FORMAT_NAME, FORMAT_VERSION, check_image_sizes, read_fixations, read_header, read_strings
from .stimuli import decode, pixel_id, read_source

ImageSource = bytes | str | Path
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
_TRUTH_TOLERANCE = 1e-3  # |log sum exp(truth)| must stay below this


class FixationDataset:
    """A read-only fixation dataset (see the module docstring for the file layout and decisions).

    Attributes:
        path: the HDF5 file.
        image_ids: list of N content ids (str), stable across re-imports.
        image_names: list of N unique file names.
        image_sizes: int64 (N, 2), rows (H, W) in pixels.
        observer_names: list of observer names indexed by observer id, or None.
        metadata: dict from the file (name, description, source, time_unit, import counts ...).
    """

    def __init__(self, path: Path, *, names, ids, sizes, offsets, observer_names, metadata, has_truth, fixations=None):
        self.path = Path(path)
        self.image_names: list[str] = list(names)
        self.image_ids: list[str] = list(ids)
        self.image_sizes: np.ndarray = np.asarray(sizes, dtype=np.int64)
        self.observer_names: list[str] | None = observer_names
        self.metadata: dict[str, Any] = metadata
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._has_truth = has_truth
        self._fixations: Fixations | None = fixations
        self._handle: h5py.File | None = None
        self._pid: int | None = None

    # -- reading ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> FixationDataset:
        """Open and validate a dataset file; images are read lazily later.

        Every value the file declares is checked before it is used (`deepgaze_hub.data.layout`),
        including each stored image size against the header of the stored image; a file that
        fails a check raises `DatasetError` naming it, the field and the image.
        """
        path = Path(path)
        if path.is_dir():
            raise DatasetError(f"{path}: is a folder, not a dataset file")
        if not path.is_file():
            raise DatasetError(f"{path}: no such dataset file")
        try:
            with h5py.File(path, "r") as f:
                header = read_header(f, path)
                names = read_strings(f["images/name"])
                ids = read_strings(f["images/id"])
                sizes = f["images/size"][()].astype(np.int64)
                check_image_sizes(f, header, sizes, names, path)
                offsets = f["fixations/offsets"][()].astype(np.int64)
                fixations = read_fixations(f, slice(None), path)
                observers = read_strings(f["observers/name"]) if header.has_observer_names else None
        except DatasetError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise DatasetError(
                f"{path}: cannot read the dataset ({error}); the file is truncated, corrupt or not a "
                "deepgaze-hub dataset"
            ) from None
        _check_tables(path, fixations, sizes, offsets, observers)
        return cls(
            path, names=names, ids=ids, sizes=sizes, offsets=offsets, observer_names=observers,
            metadata=header.metadata, has_truth=header.has_truth, fixations=fixations,
        )

    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        name = self.metadata.get("name") or self.path.name
        return f"FixationDataset({name!r}: {len(self)} images, {int(self._offsets[-1])} fixations, truth={self._has_truth})"

    @property
    def fixations(self) -> Fixations:
        """All fixations, sorted by image (cached in this process; not pickled)."""
        if self._fixations is None:
            self._fixations = read_fixations(self._file(), slice(None), self.path)
        return self._fixations

    def fixations_of(self, index: int) -> Fixations:
        """The fixations on image ``index``."""
        rows = slice(int(self._offsets[self._check(index)]), int(self._offsets[index + 1]))
        if self._fixations is not None:
            return self._fixations[rows]
        return read_fixations(self._file(), rows, self.path)

    @property
    def fixation_counts(self) -> np.ndarray:
        """int64 (N,): number of fixations per image."""
        return np.diff(self._offsets)

    @property
    def num_observers(self) -> int:
        """Number of distinct observer ids."""
        return len(np.unique(self.fixations.observer))

    @property
    def has_truth(self) -> bool:
        """Whether true log densities are stored (synthetic data)."""
        return self._has_truth

    def image_bytes(self, index: int) -> bytes:
        """The encoded image file of image ``index``, exactly as imported."""
        return self._file()["images/encoded"][self._check(index)].tobytes()

    def load_image(self, index: int) -> torch.Tensor:
        """Image ``index`` as the model's input: float32 (3, H, W) with values in [0, 255]."""
        name = f"{self.path}: image {index} ({self.image_names[self._check(index)]})"
        image = load_image(open_image(self.image_bytes(index), name), name)
        expected = tuple(int(v) for v in self.image_sizes[index])
        if tuple(image.shape[1:]) != expected:
            raise DatasetError(f"{name}: decodes to {tuple(image.shape[1:])} (H, W), the dataset says {expected}; the file is corrupt or was tampered with")
        return image

    def true_log_density(self, index: int) -> np.ndarray | None:
        """The true log density (float64 (H, W), natural log, sums to 1) or None if unknown."""
        if not self._has_truth:
            return None
        values = self._file()[f"truth/{self._check(index)}"][()].astype(np.float64)
        return values - _logsumexp(values)

    def _check(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"image index {index} out of range for a dataset of {len(self)} images")
        return index

    # -- process-safe file handle ----------------------------------------------------------------
    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._handle

    def close(self) -> None:
        """Close this process's file handle (it is reopened on the next read)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_handle=None, _pid=None, _fixations=None)
        return state

    # -- writing ---------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        images: Sequence[ImageSource],
        fixations: Fixations,
        image_names: Sequence[str] | None = None,
        image_sizes: np.ndarray | None = None,
        observer_names: Sequence[str] | None = None,
        true_log_densities: Sequence[np.ndarray] | Callable[[int], np.ndarray] | None = None,
        metadata: dict[str, Any] | None = None,
        progress: bool = False,
    ) -> FixationDataset:
        """Write a dataset atomically and return it opened.

        Args:
            path: output file (replaced if it exists, only once the new one is complete).
            images: N encoded images (bytes) or image file paths; stored byte for byte.
            fixations: the fixations; every one must lie inside its image (apply an outside policy
                first). Rows are stored sorted by image, keeping their order within an image.
            image_names: N unique names (default: the file names of path sources, else ``000000.png``...).
            image_sizes: optional (N, 2) (H, W) the source claims; an image that decodes to another
                size is an error (it would misplace every fixation on it).
            observer_names: optional names of observer ids 0..O-1.
            true_log_densities: optional true log density of each image, float (H, W) natural
                log summing to 1, as a sequence or a function of the image index.
            metadata: JSON-serialisable dict stored with the file (``time_unit`` etc.).
            progress: show a progress bar while images are written.
        """
        path = Path(path)
        where = str(path)
        if path.is_dir():
            raise DatasetError(f"{path}: is a folder; give the dataset file to write, e.g. {path / 'dataset.h5'}")
        names = _image_names(images, image_names, where)
        image_sizes, observer_names = _check_inputs(where, images, fixations, image_sizes, observer_names, true_log_densities)
        fixations = fixations[np.argsort(fixations.image, kind="stable")]
        offsets = np.searchsorted(fixations.image, np.arange(len(images) + 1)).astype(np.int64)
        meta = {"name": "", "description": "", "source": "", "time_unit": "unknown"}
        meta.update(metadata or {})
        meta["created_with"] = f"deepgaze-hub {__version__}"

        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:  # closed before the rename
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["metadata"] = json.dumps(meta, sort_keys=True)
            sizes, ids = _write_images(f, images, names, image_sizes, where, progress)
            validate_fixations(fixations, sizes, where)
            _write_strings(f, "images/name", names)
            _write_strings(f, "images/id", ids)
            f.create_dataset("images/size", data=sizes)
            _write_fixations(f, fixations, offsets)
            if observer_names is not None:
                _write_strings(f, "observers/name", observer_names)
            if true_log_densities is not None:
                _write_truth(f, true_log_densities, sizes, where)
        return cls.open(path)


# -- helpers --------------------------------------------------------------------------------------
def _image_names(images: Sequence[ImageSource], image_names: Sequence[str] | None, where: str) -> list[str]:
    if image_names is None:
        names = [Path(s).name if isinstance(s, (str, Path)) else f"{i:06d}.png" for i, s in enumerate(images)]
    else:
        names = [str(name) for name in image_names]
        if len(names) != len(images):
            raise DatasetError(f"{where}: {len(names)} image names for {len(images)} images")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if "\0" in name:
            raise DatasetError(f"{where}: image name {name!r} of image {i} contains a NUL character, which a dataset cannot store")
        if not name or name in seen:
            raise DatasetError(f"{where}: image name {name!r} of image {i} is empty or repeats image {seen.get(name)}; names must be unique")
        seen[name] = i
    return names


def _check_inputs(where, images, fixations, image_sizes, observer_names, true_log_densities):
    """Check the arguments of `FixationDataset.create` against each other before writing anything."""
    num_images = len(images)
    check_image_indices(fixations, num_images, where)
    if image_sizes is not None:
        image_sizes = np.asarray(image_sizes, dtype=np.int64)
        if image_sizes.shape != (num_images, 2):
            raise DatasetError(f"{where}: image_sizes must be ({num_images}, 2), got {image_sizes.shape}")
    if observer_names is not None:
        observer_names = [str(name) for name in observer_names]
        if len(fixations) and fixations.observer.max() >= len(observer_names):
            raise DatasetError(f"{where}: observer ids go up to {fixations.observer.max()} but only {len(observer_names)} names were given")
        _refuse_nul(observer_names, "observer name", where)
    if true_log_densities is not None and not callable(true_log_densities) and len(true_log_densities) != num_images:
        raise DatasetError(f"{where}: {len(true_log_densities)} true densities for {num_images} images")
    return image_sizes, observer_names


def _write_images(f: h5py.File, images, names: list[str], image_sizes, where: str, progress: bool) -> tuple[np.ndarray, list[str]]:
    """Store each image byte for byte after decoding it once; returns its (N, 2) (H, W) sizes and ids."""
    num_images = len(images)
    encoded = f.create_dataset("images/encoded", (num_images,), dtype=h5py.vlen_dtype(np.uint8))
    sizes = np.zeros((num_images, 2), np.int64)
    ids = []
    for i in tqdm(range(num_images), desc="images", unit="image", disable=not progress):
        label = f"{where}: image {i} ({names[i]})"
        data = read_source(images[i], label)
        pixels = decode(data, label)
        sizes[i] = pixels.shape[:2]
        if image_sizes is not None and tuple(image_sizes[i]) != tuple(sizes[i]):
            raise DatasetError(
                f"{label}: decodes to {tuple(int(v) for v in sizes[i])} (H, W) but the source "
                f"gives its size as {tuple(int(v) for v in image_sizes[i])}"
            )
        ids.append(pixel_id(pixels))
        encoded[i] = np.frombuffer(data, np.uint8)
    return sizes, ids


def _write_fixations(f: h5py.File, fixations: Fixations, offsets: np.ndarray) -> None:
    for name in FIELDS:
        _write_array(f, f"fixations/{name}", getattr(fixations, name))
    for name, values in fixations.extra.items():
        _write_array(f, f"fixations/extra/{name}", values)
    f.create_dataset("fixations/offsets", data=offsets)


def _write_truth(f: h5py.File, true_log_densities, sizes: np.ndarray, where: str) -> None:
    group = f.create_group("truth")
    for i in range(len(sizes)):
        truth = true_log_densities(i) if callable(true_log_densities) else true_log_densities[i]
        group.create_dataset(str(i), data=_check_truth(truth, sizes[i], f"{where}: true density {i}"), **_COMPRESSION)


def _write_strings(f: h5py.File, name: str, values: Sequence[str]) -> None:
    f.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype())


def _refuse_nul(values: Sequence[str], what: str, where: str) -> None:
    """HDF5 strings cannot hold NUL characters: refuse them with the value's position."""
    for i, value in enumerate(values):
        if "\0" in value:
            raise DatasetError(f"{where}: {what} {i} ({value!r}) contains a NUL character, which a dataset cannot store")


def _check_truth(truth: np.ndarray, size: np.ndarray, where: str) -> np.ndarray:
    truth = np.asarray(truth, dtype=np.float64)
    if truth.shape != tuple(size):
        raise DatasetError(f"{where}: shape {truth.shape} differs from the image size {tuple(size)}")
    if not np.isfinite(truth).all():
        raise DatasetError(f"{where}: contains NaN or infinite values")
    total = _logsumexp(truth)
    if abs(total) > _TRUTH_TOLERANCE:
        raise DatasetError(f"{where}: is not a normalised log density (log of its total mass is {total:.3g})")
    return (truth - total).astype(np.float32)


def _logsumexp(values: np.ndarray) -> float:
    top = float(values.max())
    return top + float(np.log(np.exp(values - top).sum()))


def _write_array(f: h5py.File, name: str, values: np.ndarray) -> None:
    f.create_dataset(name, data=values, **(_COMPRESSION if len(values) else {}))


def _check_tables(path: Path, fixations: Fixations, sizes: np.ndarray, offsets: np.ndarray, observers: list[str] | None) -> None:
    """Check the fixation table against the (already checked) image sizes and offsets."""
    validate_fixations(fixations, sizes, str(path))
    expected = np.searchsorted(fixations.image, np.arange(len(sizes) + 1))
    if np.any(np.diff(fixations.image) < 0) or not np.array_equal(offsets, expected):
        raise DatasetError(f"{path}: fixations are not sorted by image or fixations/offsets is wrong")
    if observers is not None and len(fixations) and fixations.observer.max() >= len(observers):
        raise DatasetError(f"{path}: observer ids exceed the {len(observers)} observer names")
