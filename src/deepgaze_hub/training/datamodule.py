"""`FixationDataModule`: images (or cached features) and fixations in batches, split by folds.

Three ways to split, chosen by the arguments:

* ``num_folds=None``: train on every image of ``dataset``, validate on ``val_dataset`` (one member);
* ``num_folds=k, fold=j``: train on folds != j, validate on fold j (one member, one fold);
* ``num_folds=k, joint=True``: k members at once; every image is in every batch stream, and a
  per-image member mask says which members train on it (all but its fold's) and which one is
  validated on it (its fold's). One pass over the data trains the whole cross-validated ensemble.

Folds are image-wise and stable (`deepgaze_hub.data.kfold_assignments`), so all fixations of an
image are in one fold. Batches hold images of one size (see `batching`); there is no padding.

A batch is a dict: ``images`` (B, 3, H, W) in [0, 255] or ``features`` (B, C, h, w);
``size`` (H, W); ``index`` (B,) dataset image indices; ``mask`` (B, K) bool member mask;
``fix_batch`` (F,) the image (0..B-1) of each fixation, ``fix_x`` / ``fix_y`` (F,) pixels.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data import FixationDataset, kfold_assignments
from ..errors import DeepGazeError
from .batching import SizeBucketBatchSampler, is_padding, real_position
from .feature_cache import FeatureCache


class ImageItems(Dataset):
    """Position -> one image's training item: pixels or cached features, fixations, member mask."""

    def __init__(
        self,
        dataset: FixationDataset,
        indices: np.ndarray,
        member_mask: np.ndarray,
        features: FeatureCache | None = None,
    ) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.member_mask = np.asarray(member_mask, dtype=bool)
        self.features = features
        if self.member_mask.shape[0] != len(self.indices):
            raise ValueError("member_mask needs one row per image")
        if features is not None:
            missing = features.missing([dataset.image_ids[i] for i in self.indices])
            if missing:
                raise DeepGazeError(
                    f"the feature cache {features.directory} lacks {len(missing)} of {len(self.indices)} images; "
                    "run `deepgaze-hub cache-features` (or train with the cache enabled) to complete it"
                )

    def __len__(self) -> int:
        return len(self.indices)

    def sizes(self) -> list[tuple[int, int]]:
        return [tuple(int(v) for v in self.dataset.image_sizes[i]) for i in self.indices]

    def __getitem__(self, position: int) -> dict[str, Any]:
        index = int(self.indices[real_position(position)])
        fixations = self.dataset.fixations_of(index)
        mask = self.member_mask[real_position(position)] & (not is_padding(position))
        item = {
            "index": index,
            "size": tuple(int(v) for v in self.dataset.image_sizes[index]),
            "mask": torch.from_numpy(np.asarray(mask, dtype=bool).copy()),
            "fix_x": torch.as_tensor(np.asarray(fixations.x), dtype=torch.float32),
            "fix_y": torch.as_tensor(np.asarray(fixations.y), dtype=torch.float32),
        }
        if self.features is not None:
            item["features"] = self.features[self.dataset.image_ids[index]]
        else:
            item["images"] = self.dataset.load_image(index)
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    sizes = {item["size"] for item in items}
    if len(sizes) != 1:
        raise ValueError(f"a batch mixes image sizes {sorted(sizes)}; use SizeBucketBatchSampler")
    pixels = "features" if "features" in items[0] else "images"
    counts = [len(item["fix_x"]) for item in items]
    return {
        pixels: torch.stack([item[pixels] for item in items]),
        "size": items[0]["size"],
        "index": torch.tensor([item["index"] for item in items]),
        "mask": torch.stack([item["mask"] for item in items]),
        "fix_batch": torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts)),
        "fix_x": torch.cat([item["fix_x"] for item in items]),
        "fix_y": torch.cat([item["fix_y"] for item in items]),
    }


class FixationDataModule(L.LightningDataModule):
    """Train/validation loaders on `FixationDataset` files, split by folds (see module doc).

    Args:
        dataset: training dataset (and the cross-validation dataset when ``num_folds`` is set).
        val_dataset: validation (stopping) set when not cross-validating.
        num_folds, fold, fold_seed, joint: the split (module doc).
        batch_size: images per step over all devices.
        seed: seed of the batch order.
        num_workers: DataLoader worker processes (datasets reopen their files per process).
        features, val_features: feature caches to read instead of running the backbone.
    """

    def __init__(
        self,
        dataset: FixationDataset,
        *,
        val_dataset: FixationDataset | None = None,
        num_folds: int | None = None,
        fold: int | None = None,
        fold_seed: int = 0,
        joint: bool = False,
        batch_size: int = 8,
        seed: int = 0,
        num_workers: int = 0,
        features: FeatureCache | None = None,
        val_features: FeatureCache | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        n = len(dataset)
        if num_folds is None:
            if fold is not None or joint:
                raise DeepGazeError("fold and joint need num_folds")
            self.num_members = 1
            self.train_items = ImageItems(dataset, np.arange(n), np.ones((n, 1), bool), features)
            self.val_items = (
                ImageItems(val_dataset, np.arange(len(val_dataset)), np.ones((len(val_dataset), 1), bool), val_features)
                if val_dataset is not None
                else None
            )
            return
        if val_dataset is not None:
            raise DeepGazeError("with num_folds the validation images are a fold of `dataset`; drop val_dataset")
        folds = kfold_assignments(dataset, k=num_folds, seed=fold_seed)
        self.folds = folds
        if joint:
            self.num_members = num_folds
            members = np.arange(num_folds)
            everything = np.arange(n)
            self.train_items = ImageItems(dataset, everything, folds[:, None] != members[None, :], features)
            self.val_items = ImageItems(dataset, everything, folds[:, None] == members[None, :], features)
        else:
            if fold is None or not 0 <= fold < num_folds:
                raise DeepGazeError(f"fold must be in [0, {num_folds}) unless joint=True")
            self.num_members = 1
            train, val = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
            self.train_items = ImageItems(dataset, train, np.ones((len(train), 1), bool), features)
            self.val_items = ImageItems(dataset, val, np.ones((len(val), 1), bool), features)

    def _loader(self, items: ImageItems, train: bool) -> DataLoader:
        trainer = self.trainer
        sampler = SizeBucketBatchSampler(
            items.sizes(),
            self.batch_size,
            shuffle=train,
            seed=self.seed,
            drop_last=False,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        return DataLoader(
            items,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_items, train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_items, train=False) if self.val_items is not None else []
