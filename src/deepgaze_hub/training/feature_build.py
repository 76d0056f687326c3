"""Building a feature cache: the frozen backbone run once over the images a cache lacks.

`build_feature_cache` runs ``model.extract_features`` in Lightning's predict loop, so the images
are split over devices like training batches (`SizeBucketBatchSampler`, padding marked and
dropped), and every process writes its own shards with `ShardWriter`. The pieces:

* `UncachedImages`: position -> one image the cache lacks (dataset index, id, pixels);
* `UncachedImagesModule`: its predict loader, one image size per batch;
* `FeatureExtractor`: the LightningModule whose predict step is the backbone;
* `ShardWriter`: collects predicted features and writes them as shards of ``shard_size`` images.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from ..errors import TrainingError
from .batching import SizeBucketBatchSampler, is_padding, real_position
from .feature_cache import DTYPES_TORCH, FeatureCache, feature_key
from .trainer import TrainerConfig, make_trainer


class UncachedImages(Dataset):
    """Position -> ``{"id", "image" (3, H, W) in [0, 255], "padding"}`` of the images ``todo``
    (indices into ``dataset``); a negative position is a padding copy (see `batching`)."""

    def __init__(self, dataset: Any, todo: Sequence[int]) -> None:
        self.dataset = dataset
        self.todo = list(todo)
        self.ids = list(dataset.image_ids)

    def __len__(self) -> int:
        return len(self.todo)

    def sizes(self) -> list[tuple[int, int]]:
        return [tuple(int(v) for v in self.dataset.image_sizes[i]) for i in self.todo]

    def __getitem__(self, position: int) -> dict[str, Any]:
        index = self.todo[real_position(position)]
        return {"id": self.ids[index], "image": self.dataset.load_image(index), "padding": is_padding(position)}


def collate_images(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"ids" (real images only), "images" (B, 3, H, W), "keep" (B,) bool: not padding}``."""
    return {
        "ids": [item["id"] for item in items if not item["padding"]],
        "images": torch.stack([item["image"] for item in items]),
        "keep": torch.tensor([not item["padding"] for item in items]),
    }


class UncachedImagesModule(L.LightningDataModule):
    """The predict loader over `UncachedImages`, split over the Trainer's devices."""

    def __init__(self, items: UncachedImages, batch_size: int) -> None:
        super().__init__()
        self.items = items
        self.images_per_batch = batch_size

    def predict_dataloader(self) -> DataLoader:
        sampler = SizeBucketBatchSampler(
            self.items.sizes(),
            self.images_per_batch,
            shuffle=False,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
        )
        return DataLoader(self.items, batch_sampler=sampler, collate_fn=collate_images)


class FeatureExtractor(L.LightningModule):
    """Predict step: the backbone features (B', C, h, w) of a batch's real (non-padding) images."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.model.extract_features(batch["images"])[batch["keep"]]


class ShardWriter(BasePredictionWriter):
    """Writes predicted features into ``cache`` as shards of ``shard_size`` images (and the rest
    at the end of the epoch), converted to the cache's dtype on the CPU."""

    def __init__(self, cache: FeatureCache, compression: str | None, shard_size: int) -> None:
        super().__init__(write_interval="batch")
        self.cache, self.compression, self.shard_size = cache, compression, shard_size
        self.ids: list[str] = []
        self.features: list[torch.Tensor] = []

    def flush(self) -> None:
        if self.ids:
            self.cache.write_shard(self.ids, self.features, self.compression)
            self.ids, self.features = [], []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self.ids.extend(batch["ids"])
        self.features.extend(prediction.detach().to("cpu", DTYPES_TORCH[self.cache.dtype]).unbind(0))
        if len(self.ids) >= self.shard_size:
            self.flush()

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self.flush()


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
    trainer: TrainerConfig | None = None,
    trainer_overrides: Mapping[str, Any] | None = None,
) -> FeatureCache:
    """Compute the features of every image of ``dataset`` that ``cache`` lacks; return the refreshed cache.

    ``trainer`` (a recipe's `TrainerConfig`, default one CPU/GPU device) and ``trainer_overrides``
    (further `lightning.Trainer` arguments) choose accelerator, devices, nodes and strategy;
    several devices split the images and each writes its own shards.
    """
    if cache.key != feature_key(model.config):
        raise TrainingError(f"{cache.directory} was opened for another model configuration")
    todo = cache.missing(list(dataset.image_ids))
    if not todo:
        return cache
    remove_partial_files(cache.directory)
    runner = make_trainer(
        trainer,
        **{"logger": False, **(trainer_overrides or {})},
        enable_checkpointing=False,
        callbacks=[ShardWriter(cache, compression, shard_size)],
    )
    with warnings.catch_warnings():  # our batch sampler does return every image
        warnings.filterwarnings("ignore", message="You are using a custom batch sampler")
        runner.predict(FeatureExtractor(model), datamodule=UncachedImagesModule(UncachedImages(dataset, todo), batch_size), return_predictions=False)
    runner.strategy.barrier()
    cache.refresh()
    return cache
