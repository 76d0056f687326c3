"""The feature cache: the frozen backbone's output, computed once per image and reused every epoch.

Layout of a cache directory::

    cache.json          {"format_version": 1, "key": {...}, "dtype": "float16"}
    shard-<hex>.h5      attrs: format_version, key (JSON), ids (JSON list of image ids)
                        one dataset per image id: (C, h, w) features on the readout grid,
                        chunked per image, compressed (lzf by default)

``key`` holds every setting that changes the features (backbone name, weights, layers,
normalisation, random-init seed, downsample, readout_factor, resize_mode): a cache built for
other settings raises `StaleCacheError` instead of being used. Images are keyed by their stable
dataset id, so a cache survives re-imports and serves any dataset holding the same images.
Shards are written atomically, so an interrupted build leaves only complete shards, and the
next build computes just the missing images. Several devices each write their own shards.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ..errors import DeepGazeError
from ..io.atomic import atomic_path, atomic_write_text
from ..model.config import DeepGazeConfig

CACHE_FORMAT_VERSION = 1
CACHE_FILE = "cache.json"
SHARD_GLOB = "shard-*.h5"
DTYPES = {"float16": np.float16, "float32": np.float32}
DTYPES_TORCH = {"float16": torch.float16, "float32": torch.float32}


class StaleCacheError(DeepGazeError, RuntimeError):
    """A feature cache computed with other settings than the model's."""


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


class FeatureCache:
    """Read access to a cache directory. Picklable: HDF5 files are opened lazily per process.

    ``cache[image_id]`` -> (C, h, w) tensor in the cache's dtype.
    """

    def __init__(self, directory: str | Path, config: DeepGazeConfig, dtype: str = "float16") -> None:
        self.directory = Path(directory)
        self.key = feature_key(config)
        self.dtype = dtype
        if dtype not in DTYPES:
            raise DeepGazeError(f"feature cache dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
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
                raise StaleCacheError(f"{path} is unreadable ({error}); delete {self.directory} to rebuild it") from error
            if found != expected:
                changed = sorted(
                    k for k in set(found.get("key", {})) | set(self.key) if found.get("key", {}).get(k) != self.key.get(k)
                )
                what = f"settings {changed}" if changed else "format or dtype"
                raise StaleCacheError(
                    f"the feature cache {self.directory} was computed with other {what} than this model "
                    f"(cache: { {k: found.get('key', {}).get(k) for k in changed} }, model: { {k: self.key.get(k) for k in changed} }); "
                    "delete it or point to another cache directory"
                )
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(expected, indent=2, sort_keys=True) + "\n")

    def refresh(self) -> None:
        """Re-read the shard list (after a build added shards)."""
        self.close()
        self._index = {}
        key = json.dumps(self.key, sort_keys=True)
        for shard in sorted(self.directory.glob(SHARD_GLOB)):
            with h5py.File(shard, "r") as handle:
                if handle.attrs.get("key") != key:
                    raise StaleCacheError(f"{shard} belongs to another model configuration; delete {self.directory}")
                for image_id in json.loads(handle.attrs["ids"]):
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


def remove_partial_files(directory: Path, older_than_s: float = 3600.0) -> None:
    """Delete temporary shard files left by an interrupted build.

    Only files untouched for ``older_than_s`` seconds go: with several processes building one
    cache (multi-GPU), a younger ``.partial`` file may be a shard another process is writing.
    """
    now = time.time()
    for leftover in Path(directory).glob(".shard-*.partial"):
        try:
            if now - leftover.stat().st_mtime > older_than_s:
                leftover.unlink(missing_ok=True)
        except FileNotFoundError:
            pass  # finished or removed meanwhile


def build_feature_cache(
    model: Any,
    dataset: Any,
    cache: FeatureCache,
    *,
    batch_size: int = 4,
    compression: str | None = "lzf",
    shard_size: int = 64,
    trainer_kwargs: dict[str, Any] | None = None,
) -> FeatureCache:
    """Compute the features of every image of ``dataset`` that ``cache`` lacks.

    Runs ``model.extract_features`` in Lightning's predict loop (``trainer_kwargs`` choose
    accelerator, devices, nodes, strategy; several devices split the images and each writes its
    own shards). Returns the refreshed cache.
    """
    import lightning as L
    from lightning.pytorch.callbacks import BasePredictionWriter
    from torch.utils.data import DataLoader, Dataset

    from .batching import SizeBucketBatchSampler, is_padding, real_position

    if cache.key != feature_key(model.config):
        raise StaleCacheError(f"{cache.directory} was opened for another model configuration")
    ids = list(dataset.image_ids)
    todo = cache.missing(ids)
    if not todo:
        return cache
    remove_partial_files(cache.directory)

    class Items(Dataset):
        def __len__(self) -> int:
            return len(todo)

        def __getitem__(self, position: int) -> dict[str, Any]:
            index = todo[real_position(position)]
            return {"id": ids[index], "image": dataset.load_image(index), "padding": is_padding(position)}

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "ids": [item["id"] for item in items if not item["padding"]],
            "images": torch.stack([item["image"] for item in items]),
            "keep": torch.tensor([not item["padding"] for item in items]),
        }

    class Images(L.LightningDataModule):
        def predict_dataloader(self) -> DataLoader:
            sampler = SizeBucketBatchSampler(
                [tuple(int(v) for v in dataset.image_sizes[i]) for i in todo],
                batch_size,
                shuffle=False,
                num_replicas=self.trainer.world_size,
                rank=self.trainer.global_rank,
            )
            return DataLoader(Items(), batch_sampler=sampler, collate_fn=collate)

    class Extractor(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
            return self.model.extract_features(batch["images"])[batch["keep"]]

    class ShardWriter(BasePredictionWriter):
        def __init__(self) -> None:
            super().__init__(write_interval="batch")
            self.ids: list[str] = []
            self.features: list[torch.Tensor] = []

        def flush(self) -> None:
            if self.ids:
                cache.write_shard(self.ids, self.features, compression)
                self.ids, self.features = [], []

        def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
            self.ids.extend(batch["ids"])
            self.features.extend(prediction.detach().to("cpu", DTYPES_TORCH[cache.dtype]).unbind(0))
            if len(self.ids) >= shard_size:
                self.flush()

        def on_predict_epoch_end(self, trainer, pl_module) -> None:
            self.flush()

    kwargs = dict(accelerator="auto", devices=1, logger=False, enable_model_summary=False)
    kwargs.update(trainer_kwargs or {})
    kwargs.update(use_distributed_sampler=False, enable_checkpointing=False, callbacks=[ShardWriter()])
    trainer = L.Trainer(**kwargs)
    with warnings.catch_warnings():  # our batch sampler does return every image
        warnings.filterwarnings("ignore", message="You are using a custom batch sampler")
        trainer.predict(Extractor(), datamodule=Images(), return_predictions=False)
    trainer.strategy.barrier()
    cache.refresh()
    return cache
