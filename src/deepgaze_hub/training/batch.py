"""`ImageItem` and `TrainingBatch`: what the training data loaders yield.

A batch holds images of one size (see `batching`), so it has one ``size``; fixations of all its
images are concatenated, and ``fix_batch`` says which image each belongs to. Lightning moves a
batch to the device field by field (its ``move_data_to_device`` handles dataclasses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageItem:
    """One image's training item; ``pixels`` is the image (3, H, W) in [0, 255] or its cached
    features (C, h, w), as ``is_features`` says."""

    index: int
    size: tuple[int, int]
    mask: torch.Tensor  # (K,) bool: the members that learn from (or validate on) this image
    fix_x: torch.Tensor  # (F,) float32 pixels, x = column
    fix_y: torch.Tensor  # (F,) float32 pixels, y = row
    pixels: torch.Tensor
    is_features: bool


@dataclass
class TrainingBatch:
    """B images of one size and their fixations.

    Attributes:
        images: (B, 3, H, W) float in [0, 255], or None when ``features`` are given.
        features: (B, C, h, w) cached backbone features, or None when ``images`` are given.
        size: (H, W) of every image, pixels.
        index: (B,) int64 dataset image indices.
        mask: (B, K) bool member mask (which members train / validate on which image).
        fix_batch: (F,) int64 the image (0..B-1) of each fixation.
        fix_x, fix_y: (F,) float32 fixation pixels (x = column, y = row).
    """

    size: tuple[int, int]
    index: torch.Tensor
    mask: torch.Tensor
    fix_batch: torch.Tensor
    fix_x: torch.Tensor
    fix_y: torch.Tensor
    images: torch.Tensor | None = None
    features: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.index)


def collate(items: list[ImageItem]) -> TrainingBatch:
    """Stack the items of one image size into a `TrainingBatch` (no padding)."""
    sizes = {item.size for item in items}
    if len(sizes) != 1:
        raise ValueError(f"a batch mixes image sizes {sorted(sizes)}; use SizeBucketBatchSampler")
    counts = [len(item.fix_x) for item in items]
    pixels = torch.stack([item.pixels for item in items])
    features = items[0].is_features
    return TrainingBatch(
        size=items[0].size,
        index=torch.tensor([item.index for item in items]),
        mask=torch.stack([item.mask for item in items]),
        fix_batch=torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts)),
        fix_x=torch.cat([item.fix_x for item in items]),
        fix_y=torch.cat([item.fix_y for item in items]),
        images=None if features else pixels,
        features=pixels if features else None,
    )
