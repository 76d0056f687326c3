"""What the baselines accept as data: a dataset, or fixations with the sizes of their images."""

from __future__ import annotations

import numpy as np

from ..data.fixations import Fixations
from ..errors import DatasetError


def selected_fixations(data, images=None) -> tuple[Fixations, np.ndarray]:
    """(fixations on the chosen images in their original order, int64 (N, 2) image sizes).

    ``data`` is a `FixationDataset` (anything with ``fixations`` and ``image_sizes``) or a
    ``(Fixations, image_sizes)`` pair; ``images`` is an optional sequence of image indices.
    """
    if isinstance(data, tuple) and len(data) == 2:
        fixations, sizes = data
    elif hasattr(data, "fixations") and hasattr(data, "image_sizes"):
        fixations, sizes = data.fixations, data.image_sizes
    else:
        raise DatasetError("pass a FixationDataset or a (Fixations, image_sizes) pair")
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    if images is not None:
        keep = np.zeros(len(sizes), bool)
        keep[np.asarray(images, dtype=np.int64)] = True
        fixations = fixations[keep[fixations.image]]
    if not len(fixations):
        raise DatasetError("no fixations to fit or evaluate on (are the selected images empty?)")
    return fixations, sizes
