"""Reading a dataset file safely: every value the file declares is checked before it is used.

A dataset file may come from anywhere (a colleague, a download, a tampered copy), so nothing in it
is trusted: `read_header` checks the root attributes (format, version, metadata) and the shape and
type of every array against the layout (see `deepgaze_hub.data.dataset`) and against the limits
below *before* any array is read, and `check_image_sizes` checks every stored (H, W) against the
header of the stored image it describes, so that no caller ever allocates from an unchecked size
(a size tampered to 100000 x 100000 would otherwise make training allocate 40 GB). Every error is a
`DatasetError` naming the file, the field (and image) and the allowed values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import DatasetError
from .fixations import FIELDS, INT_FIELDS, Fixations
from .stimuli import stored_size

FORMAT_NAME = "deepgaze-hub fixation dataset"
FORMAT_VERSION = 1

#: Most images a dataset may hold.
MAX_IMAGES = 10_000_000
#: Most fixations a dataset may hold (SALICON's mouse samples are a few hundred million).
MAX_FIXATIONS = 1 << 31
#: Most named observers and extra per-fixation fields.
MAX_OBSERVERS = 1_000_000
MAX_EXTRA_FIELDS = 256
#: Largest image side and area, in pixels (65535 is the JPEG limit; the area is 16384 x 16384).
MAX_SIDE = 65_535
MAX_PIXELS = 1 << 28
#: Largest metadata JSON text, in bytes.
MAX_METADATA_BYTES = 1 << 20
#: An array may declare at most this many times the bytes it stores (deflate compresses at most
#: ~1032:1), plus `_STORAGE_SLACK`; more means it claims values that are not in the file.
MAX_COMPRESSION = 1100
_STORAGE_SLACK = 1 << 20

#: Metadata keys with a fixed type (others are free-form JSON values).
_METADATA_STRINGS = ("name", "description", "source", "time_unit", "outside_policy", "created_with")
_METADATA_COUNTS = ("outside_count", "duplicate_count")


@dataclass(frozen=True)
class Header:
    """What a dataset file declares, checked: counts, metadata and whether truth is stored."""

    num_images: int
    num_fixations: int
    metadata: dict[str, Any]
    extra_fields: tuple[str, ...]
    has_observer_names: bool
    has_truth: bool
    truth_shapes: tuple[tuple[int, ...], ...] = ()


def read_header(f: h5py.File, path: Path) -> Header:
    """Check the attributes, and the shapes and types of all arrays, of an open dataset file.

    Nothing but attributes and array descriptions is read, so a hostile file cannot make this
    allocate; raises `DatasetError` naming ``path``, the field and the allowed values.
    """
    _check_format(f, path)
    metadata = _metadata(f.attrs.get("metadata", "{}"), path)
    encoded = _dataset(f, "images/encoded", path, ndim=1, kinds="O")
    if h5py.check_vlen_dtype(encoded.dtype) != np.dtype(np.uint8):
        raise DatasetError(f"{path}: 'images/encoded' must hold variable-length uint8 (encoded image files), got {encoded.dtype}")
    num_images = _count(encoded, "images/encoded", MAX_IMAGES, path)
    for name in ("images/name", "images/id"):
        _strings_dataset(f, name, (num_images,), path)
    _dataset(f, "images/size", path, shape=(num_images, 2), kinds="iu")
    _dataset(f, "fixations/offsets", path, shape=(num_images + 1,), kinds="iu")
    num_fixations = _count(_dataset(f, "fixations/image", path, ndim=1, kinds="iu"), "fixations/image", MAX_FIXATIONS, path)
    for name in FIELDS:
        _dataset(f, f"fixations/{name}", path, shape=(num_fixations,), kinds="iu" if name in INT_FIELDS else "iuf")
    extra = _group(f, "fixations/extra", path)
    extra = list(extra) if extra is not None else []
    if len(extra) > MAX_EXTRA_FIELDS:
        raise DatasetError(f"{path}: 'fixations/extra' has {len(extra)} fields; at most {MAX_EXTRA_FIELDS} are allowed")
    for name in extra:
        _dataset(f, f"fixations/extra/{name}", path, shape=(num_fixations,), kinds="iuf")
    if "observers/name" in f:
        observers = _strings_dataset(f, "observers/name", None, path)
        _count(observers, "observers/name", MAX_OBSERVERS, path)
    truth = _group(f, "truth", path)
    truth_shapes = ()
    if truth is not None:
        missing = [i for i in range(num_images) if str(i) not in truth]
        if missing:
            raise DatasetError(f"{path}: truth/ lacks the true density of images {missing[:5]}")
        truth_shapes = tuple(_dataset(truth, str(i), path, ndim=2, kinds="f").shape for i in range(num_images))
    return Header(
        num_images=num_images, num_fixations=num_fixations, metadata=metadata, extra_fields=tuple(extra),
        has_observer_names="observers/name" in f, has_truth=truth is not None, truth_shapes=truth_shapes,
    )


def check_image_sizes(f: h5py.File, header: Header, sizes: np.ndarray, names: list[str], path: Path) -> None:
    """Check stored (H, W) sizes against the limits, the header of every stored image and its truth.

    ``sizes`` is the int (N, 2) ``images/size`` array. The image header gives the size before EXIF
    orientation, so (W, H) is accepted too (same area; `FixationDataset.load_image` checks the
    orientation when it decodes the image). Raises `DatasetError` naming the first image whose
    size is out of bounds or differs from the image it describes.
    """
    encoded = f["images/encoded"]
    for i, (height, width) in enumerate(np.asarray(sizes).tolist()):
        label = f"{path}: image {i} ({names[i]})"
        if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE and height * width <= MAX_PIXELS):
            raise DatasetError(
                f"{label}: images/size is {height} x {width} (H x W); sides must be 1..{MAX_SIDE} px and the area at "
                f"most {MAX_PIXELS} px; the file is corrupt or was tampered with"
            )
        stored = stored_size(encoded[i].tobytes(), label)
        if (height, width) not in (stored, stored[::-1]):
            raise DatasetError(
                f"{label}: images/size says {height} x {width} (H x W) but the stored image is {stored[0]} x {stored[1]}; "
                "the file is corrupt or was tampered with; import the data again"
            )
        if header.has_truth and header.truth_shapes[i] != (height, width):
            raise DatasetError(f"{label}: truth/{i} has shape {header.truth_shapes[i]}, the image is {height} x {width} (H x W)")


def read_fixations(f: h5py.File, rows: slice, path: Path) -> Fixations:
    """The fixations of ``rows`` (a slice of the file's fixation table; shapes checked by `read_header`)."""
    values = {name: _dataset(f, f"fixations/{name}", path)[rows] for name in FIELDS}
    group = _group(f, "fixations/extra", path)
    extra = {name: dataset[rows] for name, dataset in group.items()} if group is not None else {}
    return Fixations(**values, extra=extra)


def read_strings(dataset: h5py.Dataset) -> list[str]:
    return [str(s) for s in dataset.asstr()[()]]


def text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# -- checks ---------------------------------------------------------------------------------------
def _check_format(f: h5py.File, path: Path) -> None:
    fmt, version = f.attrs.get("format", ""), f.attrs.get("format_version")
    fmt = text(fmt) if isinstance(fmt, (str, bytes)) else str(fmt.item() if isinstance(fmt, np.generic) else fmt)[:80]
    if fmt != FORMAT_NAME or version is None:
        raise DatasetError(
            f"{path}: not a deepgaze-hub fixation dataset (format attribute {fmt!r}); "
            "convert data with `deepgaze-hub data import ...`"
        )
    if isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)) or version < 1:
        shown = version.item() if isinstance(version, np.generic) else version
        raise DatasetError(f"{path}: attribute format_version must be a whole number 1..{FORMAT_VERSION}, got {shown!r:.80}")
    if int(version) > FORMAT_VERSION:
        raise DatasetError(
            f"{path}: dataset format version {int(version)} is newer than this deepgaze-hub "
            f"reads ({FORMAT_VERSION}); upgrade deepgaze-hub"
        )


def _metadata(raw: Any, path: Path) -> dict[str, Any]:
    if not isinstance(raw, (str, bytes)) or len(raw) > MAX_METADATA_BYTES:
        size = f"{len(raw)} characters" if isinstance(raw, (str, bytes)) else type(raw).__name__
        raise DatasetError(f"{path}: attribute metadata must be a JSON text of at most {MAX_METADATA_BYTES} bytes, got {size}")
    try:
        metadata = json.loads(text(raw))
    except (ValueError, RecursionError) as error:
        raise DatasetError(f"{path}: attribute metadata is not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise DatasetError(f"{path}: attribute metadata must be a JSON object, got {type(metadata).__name__}")
    for key in _METADATA_STRINGS:
        if key in metadata and not isinstance(metadata[key], str):
            raise DatasetError(f"{path}: metadata field {key!r} must be a string, got {metadata[key]!r:.80}")
    for key in _METADATA_COUNTS:
        value = metadata.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DatasetError(f"{path}: metadata field {key!r} must be a whole number >= 0, got {value!r:.80}")
    ignored = metadata.get("ignored", [])
    if not isinstance(ignored, list) or not all(isinstance(name, str) for name in ignored):
        raise DatasetError(f"{path}: metadata field 'ignored' must be a list of column names, got {ignored!r:.80}")
    return metadata


def _dataset(f: h5py.File, name: str, path: Path, *, ndim: int | None = None, shape: tuple | None = None, kinds: str | None = None) -> h5py.Dataset:
    item = f.get(name)
    if item is None:
        raise DatasetError(f"{path}: the dataset lacks {name!r}; it is truncated or not a deepgaze-hub dataset")
    if not isinstance(item, h5py.Dataset):
        raise DatasetError(f"{path}: {name!r} must be an array, got a {type(item).__name__}")
    expected = f"shape {shape}" if shape is not None else f"{ndim} dimension(s)"
    if (shape is not None and item.shape != shape) or (ndim is not None and item.ndim != ndim):
        raise DatasetError(f"{path}: {name!r} must have {expected}, got shape {item.shape}; the file is corrupt or was tampered with")
    if kinds is not None and item.dtype.kind not in kinds:
        raise DatasetError(f"{path}: {name!r} must hold {_KIND_NAMES[kinds]}, got {item.dtype}")
    if kinds != "O" and item.dtype.kind != "O":
        stored = item.id.get_storage_size()
        if item.nbytes > MAX_COMPRESSION * stored + _STORAGE_SLACK:
            raise DatasetError(
                f"{path}: {name!r} declares {item.size} values ({item.nbytes} bytes) but stores only {stored} bytes; "
                "the file is corrupt or was tampered with"
            )
    return item


_KIND_NAMES = {"O": "variable-length values", "iu": "integers", "iuf": "numbers", "f": "floating-point numbers"}


def _strings_dataset(f: h5py.File, name: str, shape: tuple | None, path: Path) -> h5py.Dataset:
    item = _dataset(f, name, path, shape=shape, ndim=None if shape else 1)
    if h5py.check_string_dtype(item.dtype) is None:
        raise DatasetError(f"{path}: {name!r} must hold strings, got {item.dtype}")
    return item


def _group(f: h5py.File, name: str, path: Path) -> h5py.Group | None:
    item = f.get(name)
    if item is not None and not isinstance(item, h5py.Group):
        raise DatasetError(f"{path}: {name!r} must be a group, got a {type(item).__name__}")
    return item


def _count(dataset: h5py.Dataset, name: str, limit: int, path: Path) -> int:
    if dataset.shape[0] > limit:
        raise DatasetError(f"{path}: {name!r} declares {dataset.shape[0]} entries; at most {limit} are allowed")
    return int(dataset.shape[0])
