"""Image-wise k-fold cross-validation splits that do not depend on file order.

A fold is a property of an **image**, keyed on its content id: each distinct id gets the key
``SHA-256(seed, id)``, the ids are ranked by key and dealt out to the folds in turn (rank mod k).
Hence

* the same images get the same folds whatever order they were imported in, and from any format
  (ids are pixel hashes, see `deepgaze_hub.data.stimuli`);
* fold sizes differ by at most one image;
* **all fixations of an image are in the same fold**: a fixation's fold is the fold of its image,
  ``folds[dataset.fixations.image]``, so no observer's fixations on a validation image are seen in
  training. Identical images (same id) also share a fold.

Fold ``k`` is the validation set of ensemble member ``k`` (docs/design.md, "Training"); the member trains on the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from ..errors import DatasetError


def kfold_assignments(dataset_or_ids, k: int = 10, seed: int = 0) -> np.ndarray:
    """The fold (0..k-1) of every image, int64 (N,), for a `FixationDataset` or a list of image ids."""
    ids = _ids(dataset_or_ids)
    if k < 2:
        raise DatasetError(f"k-fold splits need k >= 2 folds, got {k}")
    unique = sorted(set(ids), key=lambda image_id: _key(image_id, seed))
    if len(unique) < k:
        raise DatasetError(f"cannot split {len(unique)} distinct images into {k} folds; use k <= {len(unique)}")
    fold_of = {image_id: rank % k for rank, image_id in enumerate(unique)}
    return np.array([fold_of[image_id] for image_id in ids], dtype=np.int64)


def kfold_split(dataset_or_ids, fold: int, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) image indices for ``fold`` of a ``k``-fold split, each sorted int64."""
    if not 0 <= fold < k:
        raise DatasetError(f"fold must be in 0..{k - 1}, got {fold}")
    folds = kfold_assignments(dataset_or_ids, k=k, seed=seed)
    return np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)


def image_set_digest(dataset_or_ids) -> str:
    """A short fingerprint of *which* images (not their order): SHA-256 of the sorted distinct ids.

    Folds depend on the whole image set (ids are ranked within it), so a cross-validated ensemble
    records this digest: on a subset or superset of its data, members might score images they
    trained on, and evaluation refuses that.
    """
    text = "\n".join(sorted(set(_ids(dataset_or_ids))))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _ids(dataset_or_ids) -> list[str]:
    ids = getattr(dataset_or_ids, "image_ids", dataset_or_ids)
    if isinstance(ids, str) or not isinstance(ids, (Sequence, np.ndarray)):
        raise DatasetError("pass a FixationDataset or a list of image ids")
    return [str(image_id) for image_id in ids]


def _key(image_id: str, seed: int) -> bytes:
    return hashlib.sha256(f"{int(seed)}\x00{image_id}".encode()).digest()
