"""The last step every importer shares: outside policy, bookkeeping, atomic write."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..dataset import FixationDataset, ImageSource
from ..fixations import Fixations, apply_outside_policy, check_image_indices


def write_imported(
    out: str | os.PathLike,
    *,
    images: Sequence[ImageSource],
    image_names: Sequence[str],
    image_sizes: np.ndarray,
    fixations: Fixations,
    outside: str,
    source: str,
    metadata: dict[str, Any] | None = None,
    observer_names: Sequence[str] | None = None,
    progress: bool = False,
) -> FixationDataset:
    """Apply the outside policy to fixations read from ``source`` and write the dataset atomically.

    ``image_sizes`` (N, 2) are the (H, W) the importer read from headers or the source's tables;
    `FixationDataset.create` checks them against the decoded images. The number of
    fixations dropped or clipped is stored in the metadata as ``outside_count``.
    """
    check_image_indices(fixations, len(images), source)
    fixations, count = apply_outside_policy(fixations, np.asarray(image_sizes), outside, source)
    meta = {"source": source, "outside_policy": outside, "outside_count": count}
    meta.update(metadata or {})  # an importer that filtered positions itself reports its own counts
    return FixationDataset.create(
        out, images=images, fixations=fixations, image_names=image_names, image_sizes=image_sizes,
        observer_names=observer_names, metadata=meta, progress=progress,
    )
