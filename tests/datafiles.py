"""Writers of the file formats users bring, for the data tests (pysaliency HDF5, SALICON .mat, ...).

Written from the documented layouts (see deepgaze_hub.data.formats), independently of the
package's own exporters, so that an import test does not just read back what the package wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from PIL import Image


def random_image(path: Path, height: int, width: int, seed: int, mode: str = "RGB") -> Path:
    """A random image file; the suffix picks the format."""
    rng = np.random.default_rng(seed)
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode).save(path)
    return path


def _text(value: str, as_bytes: bool):
    return np.bytes_(value) if as_bytes else value


# -- pysaliency ---------------------------------------------------------------------------------
def write_file_stimuli(path: Path, filenames: list[str], shapes: list[tuple], version: str = "2.1", as_bytes: bool = True) -> None:
    """pysaliency FileStimuli; ``filenames`` as they are to be stored (relative for 2.x)."""
    with h5py.File(path, "w") as f:
        f.attrs["type"] = _text("FileStimuli", as_bytes)
        f.attrs["version"] = _text(version, as_bytes)
        f.create_dataset("filenames", data=np.array([n.encode() for n in filenames], dtype=object), dtype=h5py.string_dtype())
        shape_data = f.create_dataset("shapes", (len(shapes),), dtype=h5py.vlen_dtype(np.int64))
        for i, shape in enumerate(shapes):
            shape_data[i] = np.array(shape)
        if version >= "2.1":
            f.attrs["__attributes__"] = _text("[]", as_bytes)
        f.attrs["size"] = len(filenames)


def write_stimuli(path: Path, arrays: list[np.ndarray], version: str = "1.1", as_bytes: bool = True) -> None:
    """pysaliency Stimuli: one gzip dataset per image named "0", "1", ..."""
    with h5py.File(path, "w") as f:
        f.attrs["type"] = _text("Stimuli", as_bytes)
        f.attrs["version"] = _text(version, as_bytes)
        for i, array in enumerate(arrays):
            f.create_dataset(str(i), data=array, compression="gzip", compression_opts=9)
        if version >= "1.1":
            f.attrs["__attributes__"] = _text("[]", as_bytes)
        f.attrs["size"] = len(arrays)


def write_fixations(path: Path, x, y, t, n, subject, version: str = "1.2", as_bytes: bool = True, attributes: dict | None = None, history=None) -> None:
    """pysaliency Fixations (flat). ``history`` (F,) lengths of the scanpath history (default 0)."""
    count = len(x)
    history = np.zeros(count, int) if history is None else np.asarray(history)
    width = max(int(history.max()) if count else 0, 1)
    hist = np.full((count, width), np.nan)
    for i, h in enumerate(history):
        hist[i, :h] = 1.0  # values are never imported, only their count (1.0 format)
    subject_key = "subject" if version >= "1.2" else "subjects"
    names = [subject_key] + sorted(attributes or {})
    with h5py.File(path, "w") as f:
        f.attrs["type"] = _text("Fixations", as_bytes)
        f.attrs["version"] = _text(version, as_bytes)
        for key, values in (("x", x), ("y", y), ("t", t), ("n", n), (subject_key, subject)):
            f.create_dataset(key, data=np.asarray(values))
        for key in ("x_hist", "y_hist", "t_hist"):
            f.create_dataset(key, data=hist)
        if version >= "1.1":
            f.create_dataset("lengths", data=history)
            f.attrs["__variable_length_arrays__"] = _text(json.dumps(["t_hist", "x_hist", "y_hist"]), as_bytes)
        for key, values in (attributes or {}).items():
            f.create_dataset(key, data=np.asarray(values))
        f.attrs["__attributes__"] = _text(json.dumps(names), as_bytes)


def _padded(trains: list[dict], key: str) -> np.ndarray:
    """(scanpaths, longest) array of a per-fixation field, NaN-padded as pysaliency stores it."""
    out = np.full((len(trains), max(len(tr["xs"]) for tr in trains)), np.nan)
    for i, tr in enumerate(trains):
        out[i, : len(tr[key])] = tr[key]
    return out


def write_fixation_trains(path: Path, trains: list[dict], version: str = "1.3", as_bytes: bool = True, scanpath_attributes: dict | None = None) -> None:
    """pysaliency FixationTrains; each train is dict(xs, ys, ts, n, subject[, durations])."""
    padded = lambda key: _padded(trains, key)  # noqa: E731

    with h5py.File(path, "w") as f:
        f.attrs["type"] = _text("FixationTrains", as_bytes)
        f.attrs["version"] = _text(version, as_bytes)
        f.create_dataset("train_xs", data=padded("xs"))
        f.create_dataset("train_ys", data=padded("ys"))
        f.create_dataset("train_ts", data=padded("ts"))
        f.create_dataset("train_ns", data=np.array([tr["n"] for tr in trains]))
        f.create_dataset("train_subjects", data=np.array([tr["subject"] for tr in trains]))
        f.attrs["__attributes__"] = _text(json.dumps(["subjects"] if version < "1.3" else []), as_bytes)
        if version >= "1.1":
            group = f.create_group("scanpath_attributes")
            for key, values in (scanpath_attributes or {}).items():
                group.create_dataset(key, data=np.asarray(values))
            group.attrs["__attributes__"] = _text(json.dumps(sorted(scanpath_attributes or {})), as_bytes)
        if version >= "1.2":
            group = f.create_group("scanpath_fixation_attributes")
            has = "durations" in trains[0]
            if has:
                group.create_dataset("durations", data=padded("durations"))
            group.attrs["__attributes__"] = _text(json.dumps(["durations"] if has else []), as_bytes)
            f.attrs["scanpath_attribute_mapping"] = _text(json.dumps({"durations": "duration"} if has else {}), as_bytes)
        if version >= "1.3":
            f.create_dataset("train_lengths", data=np.array([len(tr["xs"]) for tr in trains]))


def write_scanpath_fixations(path: Path, trains: list[dict], as_bytes: bool = False) -> None:
    """pysaliency ScanpathFixations 1.0 (group ``scanpaths`` of type Scanpaths 1.0)."""
    padded = lambda key: _padded(trains, key)  # noqa: E731

    with h5py.File(path, "w") as f:
        f.attrs["type"] = _text("ScanpathFixations", as_bytes)
        f.attrs["version"] = _text("1.0", as_bytes)
        g = f.create_group("scanpaths")
        g.attrs["type"] = _text("Scanpaths", as_bytes)
        g.attrs["version"] = _text("1.0", as_bytes)
        g.create_dataset("xs", data=padded("xs"))
        g.create_dataset("ys", data=padded("ys"))
        g.create_dataset("n", data=np.array([tr["n"] for tr in trains]))
        g.create_dataset("lengths", data=np.array([len(tr["xs"]) for tr in trains]))
        sa = g.create_group("scanpath_attributes")
        sa.create_dataset("subject", data=np.array([tr["subject"] for tr in trains]))
        sa.attrs["__attributes__"] = _text(json.dumps(["subject"]), as_bytes)
        fa = g.create_group("fixation_attributes")
        fa.create_dataset("ts", data=padded("ts"))
        fa.create_dataset("durations", data=padded("durations"))
        fa.attrs["__attributes__"] = _text(json.dumps(["durations", "ts"]), as_bytes)
        g.attrs["attribute_mapping"] = _text(json.dumps({"durations": "duration"}), as_bytes)


# -- MATLAB -------------------------------------------------------------------------------------
def write_salicon_mat(path: Path, observers: list[dict], resolution=None, image_name: str | None = None) -> None:
    """A SALICON .mat: struct array ``gaze`` (location, timestamp, fixations per observer), 1-based."""
    from scipy.io import savemat

    fields = sorted({key for obs in observers for key in obs})
    gaze = np.empty((len(observers), 1), dtype=[(key, "O") for key in fields])
    for k, obs in enumerate(observers):
        gaze[k, 0] = tuple(np.asarray(obs.get(key, np.zeros((0, 0))), dtype=np.float64) for key in fields)
    variables = {"gaze": gaze}
    if resolution is not None:
        variables["resolution"] = np.array([resolution], dtype=np.float64)
    if image_name is not None:
        variables["image"] = image_name
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), variables)


def write_judd_mat(path: Path, fixations: np.ndarray, starts: np.ndarray, durations: np.ndarray) -> None:
    """The per-(image, observer) output of Judd's checkFixations as pysaliency's script saves it."""
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"fixations": np.asarray(fixations, float), "starts": np.asarray(starts, float)[None, :], "durations": np.asarray(durations, float)[None, :]})
