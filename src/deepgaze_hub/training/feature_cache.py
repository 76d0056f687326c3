"""The feature cache: the frozen backbone's output, computed once per image and reused every epoch.

Layout of a cache directory::

    cache.json          {"format_version": 1, "key": {...}, "dtype": "float16"}
    shard-<hex>.h5      attrs: format_version, key (JSON), ids (JSON list of image ids)
                        one dataset per image id: (C, h, w) features on the readout grid,
                        chunked per image, compressed (lzf by default)

``key`` holds every setting that changes the features (backbone name, weights, layers,
normalisation, random-init seed, downsample, readout_factor, resize_mode): a cache built for
other settings raises `TrainingError` instead of being used. Images are keyed by their stable
dataset id, so a cache survives re-imports and serves any dataset holding the same images.
Shards are written atomically, so an interrupted build leaves only complete shards, and the
next build computes just the missing images (`deepgaze_hub.training.feature_build`). Several
devices each write their own shards.

A training run keeps one cache per backbone setting under its ``features/`` root
(`cache_directory`); `open_feature_cache` finds the cache of a model in such a root or takes a
cache directory as given (``deepgaze-hub cache-features --out``, ``deepgaze-hub evaluate --features``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ..errors import ConfigError, TrainingError
from ..io.atomic import atomic_path, atomic_write_text
from ..model.config import DeepGazeConfig

CACHE_FORMAT_VERSION = 1
CACHE_FILE = "cache.json"
SHARD_GLOB = "shard-*.h5"
DTYPES = {"float16": np.float16, "float32": np.float32}
DTYPES_TORCH = {"float16": torch.float16, "float32": torch.float32}


def feature_key(config: DeepGazeConfig) -> dict[str, Any]:
    """The settings that determine the cached features of a model config."""
    bb = config.backbone
    return {
        "backbone": bb.name,
        "weights": bb.weights,
        "init_seed": bb.init_seed if bb.weights is None else None,
        "layers": list(bb.layers),
        "mean": list(bb.mean),
        "std": list(bb.std),
        "input_scale": bb.input_scale,
        "downsample": config.downsample,
        "readout_factor": config.readout_factor,
        "resize_mode": config.resize_mode,
    }


def cache_directory(root: str | Path, config: DeepGazeConfig) -> Path:
    """Where the cache of ``config``'s features lives under a root holding caches of several backbone
    settings (a training run's ``features/``): ``root/<first 16 hex digits of the settings' sha256>``."""
    key = json.dumps(feature_key(config), sort_keys=True)
    return Path(root) / hashlib.sha256(key.encode()).hexdigest()[:16]


def open_feature_cache(path: str | Path, config: DeepGazeConfig, *, dtype: str = "float32") -> FeatureCache:
    """The feature cache of ``config`` at ``path``: ``path`` itself when it holds a cache (``cache.json``),
    else ``cache_directory(path, config)``, the layout of a training run's ``features/`` root.

    An existing cache is used in the dtype it was built in; a new one is created in ``dtype``.
    A cache built for other backbone settings raises `TrainingError`.
    """
    path = Path(path)
    directory = path if (path / CACHE_FILE).is_file() else cache_directory(path, config)
    try:
        stored = json.loads((directory / CACHE_FILE).read_text(encoding="utf-8")).get("dtype")
    except (OSError, ValueError, AttributeError):  # no cache yet, or unreadable: FeatureCache says which
        stored = None
    return FeatureCache(directory, config, stored if stored in DTYPES else dtype)


class FeatureCache:
    """Read access to a cache directory. Picklable: HDF5 files are opened lazily per process.

    ``cache[image_id]`` -> (C, h, w) tensor in the cache's dtype.
    """

    def __init__(self, directory: str | Path, config: DeepGazeConfig, dtype: str = "float16") -> None:
        self.directory = Path(directory)
        self.key = feature_key(config)
        self.dtype = dtype
        if dtype not in DTYPES:
            raise ConfigError(f"feature cache dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self._check_or_create()
        self._index: dict[str, Path] = {}
        self._files: dict[Path, h5py.File] = {}
        self._pid = os.getpid()
        self.refresh()

    def _check_or_create(self) -> None:
        path = self.directory / CACHE_FILE
        expected = {"format_version": CACHE_FORMAT_VERSION, "key": self.key, "dtype": self.dtype}
        if path.exists():
            try:
                found = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                raise TrainingError(f"{path} is unreadable ({error}); delete {self.directory} to rebuild it") from error
            if found != expected:
                changed = sorted(
                    k for k in set(found.get("key", {})) | set(self.key) if found.get("key", {}).get(k) != self.key.get(k)
                )
                what = f"settings {changed}" if changed else "format or dtype"
                raise TrainingError(
                    f"the feature cache {self.directory} was computed with other {what} than this model "
                    f"(cache: { {k: found.get('key', {}).get(k) for k in changed} }, model: { {k: self.key.get(k) for k in changed} }); "
                    "delete it or point to another cache directory"
                )
        else:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, json.dumps(expected, indent=2, sort_keys=True) + "\n")
            except OSError as error:
                raise TrainingError(
                    f"cannot create the feature cache {self.directory} ({error.strerror or error}); choose another directory"
                ) from None

    @property
    def description(self) -> str:
        """``"the float16 feature cache DIR"``: where scores computed from these features came from."""
        return f"the {self.dtype} feature cache {self.directory}"

    def refresh(self) -> None:
        """Re-read the shard list (after a build added shards)."""
        self.close()
        self._index = {}
        key = json.dumps(self.key, sort_keys=True)
        for shard in sorted(self.directory.glob(SHARD_GLOB)):
            try:
                with h5py.File(shard, "r") as handle:
                    shard_key, ids = handle.attrs.get("key"), json.loads(handle.attrs["ids"])
            except (OSError, KeyError, ValueError) as error:
                raise TrainingError(f"feature cache shard {shard} is unreadable ({error}); delete it and its images are computed again") from None
            if shard_key != key:
                raise TrainingError(f"{shard} belongs to another model configuration; delete {self.directory}")
            for image_id in ids:
                self._index[image_id] = shard

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def missing(self, image_ids: Sequence[str]) -> list[int]:
        """Positions in ``image_ids`` that the cache does not hold."""
        return [i for i, image_id in enumerate(image_ids) if image_id not in self._index]

    def __getitem__(self, image_id: str) -> torch.Tensor:
        if self._pid != os.getpid():  # a forked DataLoader worker: never share HDF5 handles
            self._files, self._pid = {}, os.getpid()
        shard = self._index[image_id]
        handle = self._files.get(shard)
        if handle is None:
            handle = self._files[shard] = h5py.File(shard, "r")
        return torch.from_numpy(handle[image_id][()])

    def nbytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.directory.glob(SHARD_GLOB))

    def write_shard(self, image_ids: Sequence[str], features: Sequence[torch.Tensor], compression: str | None = "lzf") -> Path:
        """Write one shard atomically (the build calls this; any process may)."""
        path = self.directory / f"shard-{uuid.uuid4().hex}.h5"
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as handle:
                handle.attrs["format_version"] = CACHE_FORMAT_VERSION
                handle.attrs["key"] = json.dumps(self.key, sort_keys=True)
                handle.attrs["ids"] = json.dumps(list(image_ids))
                for image_id, tensor in zip(image_ids, features):
                    array = tensor.detach().cpu().numpy().astype(DTYPES[self.dtype])
                    handle.create_dataset(image_id, data=array, chunks=array.shape, compression=compression)
        return path

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass
