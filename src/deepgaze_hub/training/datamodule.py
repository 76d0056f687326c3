"""`FixationDataModule`: images (or cached features) and fixations in batches, split by folds.

Three ways to split, chosen by the arguments:

* ``num_folds=None``: train on every image of ``dataset``, validate on ``val_dataset`` (one member);
* ``num_folds=k, fold=j``: train on folds != j, validate on fold j (one member, one fold);
* ``num_folds=k, joint=True``: k members at once; every image is in every batch stream, and a
  per-image member mask says which members train on it (all but its fold's) and which one is
  validated on it (its fold's). One pass over the data trains the whole cross-validated ensemble.

Folds are image-wise and stable (`deepgaze_hub.data.kfold_assignments`), so all fixations of an
image are in one fold. Batches hold images of one size (see `batching`); there is no padding.

Batches are `TrainingBatch` dataclasses (see `batch`). Folds, items and the feature-cache check
are made in `FixationDataModule.setup`, which Lightning runs in every process.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data import FixationDataset, kfold_assignments
from ..errors import ConfigError, TrainingError
from .batch import ImageItem, collate
from .batching import SizeBucketBatchSampler, is_padding, real_position
from .feature_cache import FeatureCache


class ImageItems(Dataset):
    """Position -> one image's `ImageItem`: pixels or cached features, fixations, member mask."""

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
                raise TrainingError(
                    f"the feature cache {features.directory} lacks {len(missing)} of {len(self.indices)} images; "
                    "run `deepgaze-hub cache-features` (or train with the cache enabled) to complete it"
                )

    def __len__(self) -> int:
        return len(self.indices)

    def sizes(self) -> list[tuple[int, int]]:
        return [tuple(int(v) for v in self.dataset.image_sizes[i]) for i in self.indices]

    def __getitem__(self, position: int) -> ImageItem:
        index = int(self.indices[real_position(position)])
        fixations = self.dataset.fixations_of(index)
        mask = self.member_mask[real_position(position)] & (not is_padding(position))
        if self.features is not None:
            pixels = self.features[self.dataset.image_ids[index]]
        else:
            pixels = self.dataset.load_image(index)
        return ImageItem(
            index=index,
            size=tuple(int(v) for v in self.dataset.image_sizes[index]),
            mask=torch.from_numpy(np.asarray(mask, dtype=bool).copy()),
            fix_x=torch.as_tensor(np.asarray(fixations.x), dtype=torch.float32),
            fix_y=torch.as_tensor(np.asarray(fixations.y), dtype=torch.float32),
            pixels=pixels,
            is_features=self.features is not None,
        )


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
        if num_folds is None and (fold is not None or joint):
            raise ConfigError("fold and joint need num_folds")
        if num_folds is not None and val_dataset is not None:
            raise ConfigError("with num_folds the validation images are a fold of `dataset`; drop val_dataset")
        if num_folds is not None and not joint and (fold is None or not 0 <= fold < num_folds):
            raise ConfigError(f"fold must be in [0, {num_folds}) unless joint=True")
        self.dataset, self.val_dataset = dataset, val_dataset
        self.num_folds, self.fold, self.fold_seed, self.joint = num_folds, fold, fold_seed, joint
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.features, self.val_features = features, val_features
        self.num_members = num_folds if num_folds is not None and joint else 1
        self.folds: np.ndarray | None = None
        self.train_items: ImageItems | None = None
        self.val_items: ImageItems | None = None

    def setup(self, stage: str | None = None) -> None:
        """Assign folds and build the train/validation items (checks the feature caches)."""
        if self.train_items is not None:
            return
        dataset, n = self.dataset, len(self.dataset)
        if self.num_folds is None:
            self.train_items = ImageItems(dataset, np.arange(n), np.ones((n, 1), bool), self.features)
            val = self.val_dataset
            if val is not None:
                self.val_items = ImageItems(val, np.arange(len(val)), np.ones((len(val), 1), bool), self.val_features)
            return
        folds = self.folds = kfold_assignments(dataset, k=self.num_folds, seed=self.fold_seed)
        if self.joint:
            members = np.arange(self.num_folds)
            everything = np.arange(n)
            self.train_items = ImageItems(dataset, everything, folds[:, None] != members[None, :], self.features)
            self.val_items = ImageItems(dataset, everything, folds[:, None] == members[None, :], self.features)
        else:
            train, val = np.flatnonzero(folds != self.fold), np.flatnonzero(folds == self.fold)
            self.train_items = ImageItems(dataset, train, np.ones((len(train), 1), bool), self.features)
            self.val_items = ImageItems(dataset, val, np.ones((len(val), 1), bool), self.features)

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
        self.setup("fit")
        return self._loader(self.train_items, train=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup("fit")
        return self._loader(self.val_items, train=False) if self.val_items is not None else []
