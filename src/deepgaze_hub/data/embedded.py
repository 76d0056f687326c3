"""The default dataset: a small synthetic instance for the demo, the tests and first experiments.

40 scenes of 192 x 256 px (H x W), 8 observers with 6-12 fixations each (about 2,900 fixations),
true densities included; small enough that a 2-fold training of a randomly initialised VGG-19
readout finishes in minutes on two CPU cores.

**Generated on first use, not shipped.** The file is about 8 MB (PNG images plus float32 true
densities), too large to put in every wheel, while the generator is deterministic: the first call
writes it atomically into the cache folder and later calls open it. Concurrent first calls are
safe (each writes its own temporary file; the rename is atomic). The file name carries
`GENERATOR_VERSION`, so a generator change never reuses a stale file. Image ids are pixel hashes,
so folds are identical on every machine even if PNG encoders differ.

`open_dataset` is the one way to turn a user's dataset argument into a dataset: the name
`EMBEDDED` (``"embedded"``) means this default dataset, anything else a dataset file path.

Cache folder: the ``cache_dir`` argument, else ``$DEEPGAZE_HUB_CACHE``, else
``$XDG_CACHE_HOME/deepgaze-hub``, else ``~/.cache/deepgaze-hub``; files go under ``datasets/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DatasetError
from .dataset import FixationDataset
from .synthetic import GENERATOR_VERSION, make_synthetic_dataset

#: The name that stands for the default dataset wherever a dataset file path is accepted.
EMBEDDED = "embedded"

#: The generator settings of the default dataset.
EMBEDDED_SETTINGS = {"num_images": 40, "size": (192, 256), "num_observers": 8, "fixations_per_observer": (6, 12), "seed": 2016}


def cache_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder deepgaze-hub caches generated data in (see module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("DEEPGAZE_HUB_CACHE"):
        return Path(os.environ["DEEPGAZE_HUB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepgaze-hub"


def embedded_dataset_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the default dataset file, generating it first if it is not in the cache."""
    return default_dataset(cache_dir).path


def default_dataset(cache_dir: str | os.PathLike | None = None) -> FixationDataset:
    """The default synthetic dataset, opened (generated on first use, see module docstring)."""
    path = cache_folder(cache_dir) / "datasets" / f"synthetic-default-v{GENERATOR_VERSION}.h5"
    if path.is_file():
        try:
            return FixationDataset.open(path)
        except DatasetError:
            pass  # unreadable (e.g. damaged): generate it again
    return make_synthetic_dataset(path, name="deepgaze-hub default synthetic dataset", **EMBEDDED_SETTINGS)


def open_dataset(name_or_path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> FixationDataset:
    """Open the dataset a user named: `EMBEDDED` (``"embedded"``) for the default dataset, else a file.

    ``cache_dir`` only matters for the default dataset (see module docstring). A file that is
    missing, unreadable or not a valid dataset raises `DatasetError` naming it.
    """
    if isinstance(name_or_path, str) and name_or_path == EMBEDDED:
        return default_dataset(cache_dir)
    path = Path(name_or_path)
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder, not a dataset file; pass a .h5 file written by `deepgaze-hub data import` or {EMBEDDED!r}")
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file; pass a .h5 file written by `deepgaze-hub data import` or {EMBEDDED!r}")
    return FixationDataset.open(path)
