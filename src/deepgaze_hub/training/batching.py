"""Batches of images of one size, identical whether training runs on 1 device or N.

Images of different sizes cannot share a tensor, and padding would change the densities (they
are normalised over the whole image), so batches group images of equal size instead. The
sampler draws *global* batches (``batch_size`` images) from a seeded generator and gives rank r
the images ``r, r + N, ...`` of each: every rank takes the same number of steps, and the union of
what the N ranks see in a step is exactly the batch one process would see. A rank left without an
image in a small batch gets a padding copy, marked by a negative position (``-1 - i``), that the
dataset returns with all member masks off, so it contributes nothing to losses or metrics.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def padding_position(position: int) -> int:
    return -1 - position


def is_padding(position: int) -> bool:
    return position < 0


def real_position(position: int) -> int:
    return -1 - position if position < 0 else position


class SizeBucketBatchSampler(Sampler[list[int]]):
    """Yield lists of positions into ``sizes`` whose images all have the same (H, W).

    Args:
        sizes: (H, W) of every position.
        batch_size: images per global batch (over all ranks).
        shuffle: shuffle within sizes and the order of batches, anew every epoch (`set_epoch`).
        seed: seed of that shuffling.
        drop_last: drop the incomplete last batch of each size (training) or keep it.
        num_replicas, rank: the data-parallel world; positions are split per global batch.
    """

    def __init__(
        self,
        sizes: Sequence[tuple[int, int]],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1 or not 0 <= rank < num_replicas:
            raise ValueError("batch_size must be >= 1 and 0 <= rank < num_replicas")
        self.sizes = [tuple(int(v) for v in size) for size in sizes]
        # Not named batch_size / drop_last: Lightning would then try to rebuild this sampler.
        self.images_per_batch = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_incomplete = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        # Lightning calls `set_epoch` on `batch_sampler.sampler` at every epoch start.
        self.sampler = _EpochHook(self)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        groups: dict[tuple[int, int], list[int]] = {}
        for position, size in enumerate(self.sizes):
            groups.setdefault(size, []).append(position)
        batches: list[list[int]] = []
        for size in sorted(groups):
            members = groups[size]
            if self.shuffle:
                members = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
            for start in range(0, len(members), self.images_per_batch):
                batch = members[start : start + self.images_per_batch]
                if len(batch) == self.images_per_batch or not self.drop_incomplete:
                    batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            part = batch[self.rank :: self.num_replicas]
            yield part if part else [padding_position(batch[0])]

    def __len__(self) -> int:
        return len(self.global_batches())


class _EpochHook:
    """Forwards Lightning's per-epoch ``set_epoch`` call to the batch sampler."""

    def __init__(self, owner: SizeBucketBatchSampler) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)
