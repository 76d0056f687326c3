"""pysaliency HDF5 files: import into a `FixationDataset` and export back.

What is read (the root attribute ``type`` names the class, ``version`` its layout version; both,
and every JSON attribute, may be stored as bytes or str):

* stimuli, ``FileStimuli`` 1.0 / 2.0 / 2.1: dataset ``filenames`` (relative to the file's folder
  from 2.0 on; 1.0 stored them as given, tried relative to the file's folder, then as written),
  ``shapes`` ((H, W[, C]) per image), attribute ``size``. The image files are embedded as they are.
* stimuli, ``Stimuli`` 1.0 / 1.1: one array dataset per image named ``"0"``, ``"1"``, ... and
  attribute ``size``. Arrays are stored as lossless PNG named ``000000.png``, ...
* fixations, ``Fixations`` 1.0 / 1.1 / 1.2: datasets ``x``, ``y``, ``t``, ``n`` (image index) and
  ``subjects`` (before 1.2) or ``subject``; attribute ``__attributes__`` (JSON list of further
  per-fixation datasets); ``lengths`` (1.1+; else counted from ``x_hist``) = history length.
  ``scanpath_index`` becomes the scanpath id and the history length its position; an attribute
  ``duration`` or ``durations`` becomes the duration; other 1-d numeric attributes are kept as
  extra fields. ``*_hist`` arrays are not imported: they are the earlier fixations of the same
  scanpath and are rebuilt on export.
* fixations, ``FixationTrains`` 1.0 - 1.3: NaN-padded (scanpaths x fixations) ``train_xs``,
  ``train_ys``, ``train_ts``; ``train_ns``, ``train_subjects``; ``train_lengths`` (1.3; else the
  position of the last non-NaN x + 1); group ``scanpath_fixation_attributes`` (1.2+, padded
  per-fixation values such as ``durations``) renamed by the JSON attribute
  ``scanpath_attribute_mapping``. Scanpath t is train t; fixations keep their train order.
* fixations, ``ScanpathFixations`` 1.0: group ``scanpaths`` (``Scanpaths`` 1.0) with padded ``xs``,
  ``ys``, ``n``, ``lengths``, groups ``scanpath_attributes`` (``subject``) and
  ``fixation_attributes`` (``ts``, ``durations``, ...) and attribute ``attribute_mapping``.

Per-scanpath attributes (group ``scanpath_attributes`` other than the subject) have no place in
the dataset format; their names are listed in the metadata under ``ignored`` so nothing is dropped
silently. pysaliency has no time unit: ``time_unit`` is "unknown" unless given.

Export writes ``FileStimuli`` 2.1 (the embedded image files written beside the stimuli file under
their names) and ``FixationTrains`` 1.3 when every fixation belongs to a complete scanpath (trains
in order of scanpath id; durations as ``durations`` mapped to ``duration`` and extra fields as
further scanpath fixation attributes), else ``Fixations`` 1.2 with ``scanpath_index``, histories
rebuilt from the scanpaths (NaN where a position is missing, e.g. dropped outside the image;
``lengths`` keeps the recorded position), and extra fields as attributes. Importing an export gives back the same dataset (when scanpath ids are 0..T-1, as imported ones are).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ...errors import DatasetError
from ...io.atomic import atomic_path, atomic_write_bytes
from ..dataset import FixationDataset
from ..fixations import FIELDS, Fixations
from ..stimuli import displayed_size, encode_png
from .common import write_imported

STIMULI_VERSIONS = {"FileStimuli": ("1.0", "2.0", "2.1"), "Stimuli": ("1.0", "1.1")}
FIXATION_VERSIONS = {
    "Fixations": ("1.0", "1.1", "1.2"),
    "FixationTrains": ("1.0", "1.1", "1.2", "1.3"),
    "ScanpathFixations": ("1.0",),
}
_DURATION_NAMES = ("duration", "durations")


def import_pysaliency(
    stimuli: str | os.PathLike,
    fixations: str | os.PathLike,
    out: str | os.PathLike,
    *,
    outside: str = "drop",
    name: str | None = None,
    time_unit: str = "unknown",
    progress: bool = False,
) -> FixationDataset:
    """Convert a pysaliency stimuli file and fixations file into a dataset at ``out``.

    ``outside``: policy for fixations outside their image (``"drop"``, ``"clip"``, ``"error"``).
    """
    sources, names, sizes = read_stimuli(stimuli)
    fixation_data, ignored = read_fixations(fixations)
    metadata: dict[str, Any] = {"name": name or Path(fixations).stem, "time_unit": time_unit}
    if ignored:
        metadata["ignored"] = ignored
    return write_imported(
        out, images=sources, image_names=names, image_sizes=sizes, fixations=fixation_data,
        outside=outside, source=f"pysaliency {stimuli} + {fixations}", metadata=metadata, progress=progress,
    )


def read_stimuli(path: str | os.PathLike) -> tuple[list, list[str], np.ndarray]:
    """(image sources, names, (N, 2) sizes) from a pysaliency stimuli file."""
    path = Path(path)
    with _open(path) as f:
        kind, version = _type_and_version(f, path, STIMULI_VERSIONS)
        count = int(_attr(f, "size", path))
        if kind == "Stimuli":
            sources, sizes = [], []
            for i in range(count):
                array = _dataset(f, str(i), path)[()]
                sources.append(encode_png(array, f"{path}: stimulus {i}"))
                sizes.append(array.shape[:2])
            return sources, [f"{i:06d}.png" for i in range(count)], np.array(sizes, np.int64).reshape(-1, 2)
        filenames = [_text(name) for name in _dataset(f, "filenames", path)[()]]
        shapes = [tuple(int(v) for v in shape) for shape in _dataset(f, "shapes", path)[()]]
    if len(filenames) != count or len(shapes) != count:
        raise DatasetError(f"{path}: FileStimuli lists {len(filenames)} files and {len(shapes)} shapes for size {count}")
    sources = [_locate(path, filename, version) for filename in filenames]
    sizes = np.array([shape[:2] for shape in shapes], np.int64).reshape(-1, 2)
    for source, filename, size in zip(sources, filenames, sizes):
        actual = displayed_size(source, f"{path}: stimulus file {filename}")
        if actual != tuple(size):
            raise DatasetError(
                f"{path}: stimulus file {filename} is {actual} (H, W) as displayed (EXIF orientation applied) but "
                f"the stimuli file records {tuple(int(v) for v in size)}; fixation coordinates would not match"
            )
    return sources, filenames, sizes


def read_fixations(path: str | os.PathLike) -> tuple[Fixations, list[str]]:
    """(fixations, names of ignored attributes) from a pysaliency fixations file."""
    path = Path(path)
    with _open(path) as f:
        kind, version = _type_and_version(f, path, FIXATION_VERSIONS)
        try:
            if kind == "Fixations":
                return _read_flat(f, version, path)
            if kind == "FixationTrains":
                return _read_trains(f, version, path)
            group = _group(f, "scanpaths", path)
            _type_and_version(group, path, {"Scanpaths": ("1.0",)})
            return _read_scanpaths(group, path)
        except DatasetError as error:  # e.g. arrays of different lengths: say which file
            if str(path) in str(error):
                raise
            raise DatasetError(f"{path}: {error}") from None


def _read_flat(f: h5py.File, version: str, path: Path) -> tuple[Fixations, list[str]]:
    x, y, t, n = (_dataset(f, key, path)[()] for key in ("x", "y", "t", "n"))
    count = len(x)
    subject_key = "subject" if version >= "1.2" else "subjects"
    observer = _integers(_dataset(f, subject_key, path)[()], path, subject_key)
    if version >= "1.1":
        history = _dataset(f, "lengths", path)[()]
    else:
        history = (~np.isnan(np.asarray(_dataset(f, "x_hist", path)[()], np.float64).reshape(count, -1))).sum(axis=1)
    names = json.loads(_text(_attr(f, "__attributes__", path)))
    duration, extra, ignored = np.full(count, np.nan), {}, []
    scanpath = np.full(count, -1, np.int64)
    for key in names:
        if key in ("subject", "subjects") or key.endswith("_hist"):
            continue
        values = np.asarray(_dataset(f, key, path)[()])
        if values.shape != (count,) or values.dtype.kind not in "biuf":
            ignored.append(key)
        elif key == "scanpath_index":
            scanpath = _integers(values, path, key)
        elif key in _DURATION_NAMES:
            duration = values
        else:
            extra[key] = values
    order = np.where(scanpath >= 0, history, -1)
    fixations = Fixations.build(
        image=_integers(n, path, "n"), x=x, y=y, observer=observer, t=t, duration=duration,
        scanpath=scanpath, order=order, extra=extra,
    )
    return fixations, ignored


def _read_trains(f: h5py.File, version: str, path: Path) -> tuple[Fixations, list[str]]:
    xs, ys, ts = (np.asarray(_dataset(f, key, path)[()], np.float64) for key in ("train_xs", "train_ys", "train_ts"))
    images = _integers(_dataset(f, "train_ns", path)[()], path, "train_ns")
    subjects = _integers(_dataset(f, "train_subjects", path)[()], path, "train_subjects")
    if xs.ndim != 2 or ys.shape != xs.shape or ts.shape != xs.shape or len(images) != len(xs) or len(subjects) != len(xs):
        raise DatasetError(
            f"{path}: FixationTrains arrays disagree: train_xs {xs.shape}, train_ys {ys.shape}, train_ts {ts.shape}, "
            f"train_ns {images.shape}, train_subjects {subjects.shape}"
        )
    if version >= "1.3":
        lengths = _integers(_dataset(f, "train_lengths", path)[()], path, "train_lengths")
    else:
        valid = ~np.isnan(xs)
        lengths = np.where(valid.any(axis=1), xs.shape[1] - np.argmax(valid[:, ::-1], axis=1), 0)
    fixation_attributes, mapping = {}, {}
    if version >= "1.2":
        fixation_attributes = _attribute_group(f, "scanpath_fixation_attributes", path)
        mapping = json.loads(_text(_attr(f, "scanpath_attribute_mapping", path)))
    ignored = sorted(_attribute_group(f, "scanpath_attributes", path)) if version >= "1.1" else []
    fixations, more = _from_padded(xs, ys, ts, images, subjects, lengths, fixation_attributes, mapping, path)
    extra = dict(fixations.extra)
    for key in json.loads(_text(_attr(f, "__attributes__", path))):  # per-fixation, in train order
        if key in ("subject", "subjects", "scanpath_index") or key.endswith("_hist"):
            continue
        values = np.asarray(_dataset(f, key, path)[()])
        if values.shape == (len(fixations),) and values.dtype.kind in "biuf" and key not in extra:
            extra[key] = values
        else:
            more.append(key)
    fields = {name: getattr(fixations, name) for name in FIELDS}
    return Fixations(**fields, extra=extra), ignored + more


def _read_scanpaths(group: h5py.Group, path: Path) -> tuple[Fixations, list[str]]:
    xs, ys = (np.asarray(_dataset(group, key, path)[()], np.float64) for key in ("xs", "ys"))
    images = _integers(_dataset(group, "n", path)[()], path, "n")
    lengths = _integers(_dataset(group, "lengths", path)[()], path, "lengths")
    scanpath_attributes = _attribute_group(group, "scanpath_attributes", path)
    fixation_attributes = _attribute_group(group, "fixation_attributes", path)
    mapping = json.loads(_text(_attr(group, "attribute_mapping", path)))
    if "subject" not in scanpath_attributes:
        raise DatasetError(f"{path}: Scanpaths has no 'subject' scanpath attribute")
    subjects = _integers(scanpath_attributes.pop("subject"), path, "subject")
    ts = fixation_attributes.pop("ts", np.full(xs.shape, np.nan))
    fixations, ignored = _from_padded(xs, ys, ts, images, subjects, lengths, fixation_attributes, mapping, path)
    return fixations, sorted(scanpath_attributes) + ignored


def _from_padded(xs, ys, ts, images, subjects, lengths, fixation_attributes, mapping, path):
    """Flatten NaN-padded (scanpaths, positions) arrays in scanpath order."""
    if len(lengths) != len(xs) or (len(lengths) and (lengths.min() < 0 or lengths.max() > xs.shape[1])):
        raise DatasetError(f"{path}: scanpath lengths do not fit the padded arrays of shape {xs.shape}")
    take = np.arange(xs.shape[1])[None, :] < lengths[:, None]
    rows = np.nonzero(take)[0]
    duration, extra, ignored = np.full(len(rows), np.nan), {}, []
    for key, values in fixation_attributes.items():
        values = np.asarray(values)
        target = mapping.get(key, key)
        if values.shape != xs.shape or values.dtype.kind not in "biuf":
            ignored.append(key)
        elif key in _DURATION_NAMES or target in _DURATION_NAMES:
            duration = values[take]
        else:
            extra[target] = values[take]
    fixations = Fixations.build(
        image=images[rows], x=xs[take], y=ys[take], observer=subjects[rows], t=np.asarray(ts, np.float64)[take],
        duration=duration, scanpath=rows, order=np.nonzero(take)[1], extra=extra,
    )
    return fixations, ignored


# -- export ---------------------------------------------------------------------------------------
def export_pysaliency(dataset: FixationDataset, stimuli: str | os.PathLike, fixations: str | os.PathLike) -> str:
    """Write ``dataset`` as pysaliency ``FileStimuli`` + fixations files; returns the fixation type.

    The image files are written beside the stimuli file, under their dataset names.
    """
    stimuli, fixations_path = Path(stimuli), Path(fixations)
    folder = stimuli.parent
    shapes = []
    for i, name in enumerate(dataset.image_names):
        target = _safe_child(folder, name, dataset.path)
        data = dataset.image_bytes(i)
        atomic_write_bytes(target, data)
        height, width = dataset.image_sizes[i]
        channels = _channels(data)
        shapes.append((height, width) if channels == 1 else (height, width, channels))
    with atomic_path(stimuli) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["type"] = np.bytes_("FileStimuli")
        f.attrs["version"] = np.bytes_("2.1")
        f.create_dataset("filenames", data=np.array([n.encode() for n in dataset.image_names], dtype=object), dtype=h5py.string_dtype())
        shape_data = f.create_dataset("shapes", (len(shapes),), dtype=h5py.vlen_dtype(np.int64))
        for i, shape in enumerate(shapes):
            shape_data[i] = np.array(shape, np.int64)
        f.attrs["__attributes__"] = np.bytes_("[]")
        f.attrs["size"] = len(shapes)
    fix = dataset.fixations
    as_trains = _complete_scanpaths(fix)
    with atomic_path(fixations_path) as tmp, h5py.File(tmp, "w") as f:
        (_write_trains if as_trains else _write_flat)(f, fix)
    return "FixationTrains" if as_trains else "Fixations"


def _complete_scanpaths(fix: Fixations) -> bool:
    """Every fixation is in a scanpath whose positions are exactly 0..L-1."""
    if not len(fix) or (fix.scanpath < 0).any():
        return False
    _, rank, counts = np.unique(fix.scanpath, return_inverse=True, return_counts=True)
    positions = rank * (int(fix.order.max()) + 1) + fix.order
    return bool((fix.order < counts[rank]).all()) and len(np.unique(positions)) == len(fix)


def _write_trains(f: h5py.File, fix: Fixations) -> None:
    ids, first, rank = np.unique(fix.scanpath, return_index=True, return_inverse=True)
    length = int(fix.order.max()) + 1

    def padded(values: np.ndarray) -> np.ndarray:
        out = np.full((len(ids), length), np.nan)
        out[rank, fix.order] = values
        return out

    f.attrs["type"] = np.bytes_("FixationTrains")
    f.attrs["version"] = np.bytes_("1.3")
    f.create_dataset("train_xs", data=padded(fix.x))
    f.create_dataset("train_ys", data=padded(fix.y))
    f.create_dataset("train_ts", data=padded(fix.t))
    f.create_dataset("train_ns", data=fix.image[first])
    f.create_dataset("train_subjects", data=fix.observer[first])
    f.create_dataset("train_lengths", data=np.bincount(rank, minlength=len(ids)).astype(np.int64))
    f.attrs["__attributes__"] = np.bytes_("[]")
    group = f.create_group("scanpath_attributes")
    group.attrs["__attributes__"] = np.bytes_("[]")
    group = f.create_group("scanpath_fixation_attributes")
    mapping = {}
    if not np.isnan(fix.duration).all():
        group.create_dataset("durations", data=padded(fix.duration))
        mapping["durations"] = "duration"
    for key, values in fix.extra.items():
        group.create_dataset(key, data=padded(values))
    group.attrs["__attributes__"] = np.bytes_(json.dumps(sorted(group.keys())))
    f.attrs["scanpath_attribute_mapping"] = np.bytes_(json.dumps(mapping))


def _write_flat(f: h5py.File, fix: Fixations) -> None:
    history = np.where(fix.scanpath >= 0, fix.order, 0)
    width = max(int(history.max()) if len(fix) else 0, 1)
    hist = {key: np.full((len(fix), width), np.nan) for key in ("x", "y", "t")}
    if fix.has_scanpaths:  # positions missing from a scanpath (e.g. dropped outside the image) stay NaN
        position = {(int(s), int(o)): i for i, (s, o) in enumerate(zip(fix.scanpath, fix.order)) if s >= 0}
        for i in np.flatnonzero(history > 0):
            for k in range(int(history[i])):
                earlier = position.get((int(fix.scanpath[i]), k))
                if earlier is not None:
                    for key, values in hist.items():
                        values[i, k] = getattr(fix, key)[earlier]
    f.attrs["type"] = np.bytes_("Fixations")
    f.attrs["version"] = np.bytes_("1.2")
    for key in ("x", "y", "t"):
        f.create_dataset(key, data=getattr(fix, key))
        f.create_dataset(f"{key}_hist", data=hist[key])
    f.create_dataset("n", data=fix.image)
    f.create_dataset("lengths", data=history)
    f.create_dataset("subject", data=fix.observer)
    attributes = ["subject"]
    if fix.has_scanpaths:
        f.create_dataset("scanpath_index", data=fix.scanpath)
        attributes.append("scanpath_index")
    if not np.isnan(fix.duration).all():
        f.create_dataset("duration", data=fix.duration)
        attributes.append("duration")
    for key, values in fix.extra.items():
        f.create_dataset(key, data=values)
        attributes.append(key)
    f.attrs["__attributes__"] = np.bytes_(json.dumps(attributes))
    f.attrs["__variable_length_arrays__"] = np.bytes_(json.dumps(["t_hist", "x_hist", "y_hist"]))


# -- helpers --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _open(path: Path) -> Iterator[h5py.File]:
    """Open a pysaliency file for reading; HDF5 read errors become `DatasetError` naming it."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            yield f
    except (OSError, KeyError, ValueError, TypeError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot read it as a pysaliency HDF5 file ({error}); is it truncated?") from None


def _type_and_version(f, path: Path, known: dict[str, tuple[str, ...]]) -> tuple[str, str]:
    kind, version = _text(_attr(f, "type", path)), _text(_attr(f, "version", path))
    if kind not in known:
        raise DatasetError(f"{path}: pysaliency type {kind!r} where one of {sorted(known)} was expected")
    if version not in known[kind]:
        raise DatasetError(f"{path}: {kind} format version {version!r} is not supported (known: {', '.join(known[kind])})")
    return kind, version


def _attr(f, key: str, path: Path):
    if key not in f.attrs:
        raise DatasetError(f"{path}: attribute {key!r} is missing from {f.name!r}; not a pysaliency file of this type")
    return f.attrs[key]


def _dataset(f, key: str, path: Path) -> h5py.Dataset:
    item = f.get(key)
    if not isinstance(item, h5py.Dataset):
        raise DatasetError(f"{path}: dataset {key!r} is missing from {f.name!r}")
    return item


def _group(f, key: str, path: Path) -> h5py.Group:
    item = f.get(key)
    if not isinstance(item, h5py.Group):
        raise DatasetError(f"{path}: group {key!r} is missing from {f.name!r}")
    return item


def _attribute_group(f, key: str, path: Path) -> dict[str, np.ndarray]:
    group = _group(f, key, path)
    names = json.loads(_text(_attr(group, "__attributes__", path)))
    return {name: _dataset(group, name, path)[()] for name in names}


def _integers(values, path: Path, key: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or (values != np.round(values)).any():
            raise DatasetError(f"{path}: {key!r} must hold whole numbers")
    elif values.dtype.kind not in "biu":
        raise DatasetError(f"{path}: {key!r} must be numeric, got {values.dtype}")
    return values.astype(np.int64)


def _locate(path: Path, filename: str, version: str) -> Path:
    candidate = path.parent / filename
    if version >= "2.0" or candidate.is_file():
        return candidate
    return Path(filename)


def _safe_child(folder: Path, name: str, where: Path) -> Path:
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise DatasetError(f"{where}: image name {name!r} is not a relative path inside a folder; cannot export it")
    return folder / relative


def _channels(data: bytes) -> int:
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(data)) as image:
        return len(image.getbands())


def _text(value: Any) -> str:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)
