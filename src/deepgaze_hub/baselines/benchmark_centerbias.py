"""The benchmark's centre bias: pysaliency's ``BaselineModel`` and ``CrossvalidatedBaselineModel``.

The MIT/Tübingen benchmark measures information gain against these two models (see
docs/design.md, "Centre bias"), which differ from `CenterBiasModel` (a pixel-integrated KDE whose
kernels are truncated to the image, with fitted parameters). For an image of (H, W):

1. every fixation's position is normalised by its own image's size, ``u = x / W_i``, ``v = y / H_i``
   (float64), and all images are pooled (``CrossvalidatedBaselineModel``: all images *but the
   scored one*, leave one image out);
2. a count map at the target size: ``Z[int(v * H), int(u * W)] += 1`` (truncation; a position
   that rounds to ``H`` or ``W`` exactly, where pysaliency raises, is put in the last row/column);
3. ``Z`` blurred like ``scipy.ndimage.gaussian_filter(Z, [bandwidth * H, bandwidth * W])``
   (mirrored borders ``mode="reflect"``, kernels truncated at 4 standard deviations);
4. ``Z * (1 - eps) + eps / (H * W)`` (on the blurred *counts*, not on a normalised map);
5. ``log Z - logsumexp(log Z)``: natural-log densities, ``exp`` sums to 1.

Fixed parameters, not fitted: the MIT1003 benchmark setting is `MIT1003_SETTING`, SALICON's
`SALICON_SETTING`. Everything is float64 (the maps equal a literal scipy computation to ~1e-12).

Leaving one image out costs one subtraction per image: the blurred count map of all fixations
(once per image size) minus the blurred counts of the image's own fixations (a rank-k product,
k its fixations). Where the other images contribute too little of a pixel's total for the
difference to keep its precision (`kde.held_out_difference`), that image's map is blurred from its
held-out counts directly instead.
"""

from __future__ import annotations

import math
from functools import partial
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .blur import gaussian_matrix
from ..errors import DatasetError
from .inputs import selected_fixations
from .kde import held_out_difference

#: (bandwidth, eps) of the MIT1003 benchmark (pysaliency's ``CrossvalidatedBaselineModel``).
MIT1003_SETTING = (10**-1.6668, 10**-14.88)
#: (bandwidth, eps) of SALICON.
SALICON_SETTING = (0.0217, 2e-13)


@dataclass
class BenchmarkCenterBias:
    """pysaliency's centre-bias baseline with fixed ``bandwidth`` and ``eps`` (module docstring).

    Attributes:
        bandwidth: kernel std as a fraction of the height (rows) and of the width (columns).
        eps: weight of the uniform term, mixed into the blurred counts.
        u, v: float64 (F,) fixation positions normalised by their own image's width / height.
        image: int64 (F,) image index of each fixation.
    """

    bandwidth: float
    eps: float
    u: np.ndarray
    v: np.ndarray
    image: np.ndarray

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise DatasetError(f"centre-bias bandwidth must be > 0 (a fraction of the image size), got {self.bandwidth}")
        if not (math.isfinite(self.eps) and 0 <= self.eps < 1):
            raise DatasetError(f"centre-bias eps must be in [0, 1), got {self.eps}")

    @classmethod
    def from_data(cls, data, bandwidth: float, eps: float, images=None) -> BenchmarkCenterBias:
        """From a `FixationDataset` or a ``(Fixations, image_sizes)`` pair (optionally some images only)."""
        fixations, sizes = selected_fixations(data, images)
        size = sizes[fixations.image].astype(np.float64)
        return cls(float(bandwidth), float(eps), fixations.x / size[:, 1], fixations.y / size[:, 0], fixations.image.astype(np.int64))

    def log_density(self, size) -> torch.Tensor:
        """float64 (H, W) log density from all fixations (pysaliency's ``BaselineModel``)."""
        height, width = int(size[0]), int(size[1])
        blur = _SizeBlur(height, width, self.bandwidth)
        return self._finish(blur.of_counts(self._counts(np.ones(len(self.u), bool), height, width)))

    def crossvalidated_log_density(self, index: int, size) -> torch.Tensor:
        """float64 (H, W) log density of image ``index`` from the other images' fixations
        (pysaliency's ``CrossvalidatedBaselineModel``), computed directly."""
        height, width = int(size[0]), int(size[1])
        blur = _SizeBlur(height, width, self.bandwidth)
        return self._finish(blur.of_counts(self._counts(self.image != index, height, width)))

    def crossvalidated_log_densities(self, sizes) -> Iterator[torch.Tensor]:
        """float64 (H, W) leave-one-image-out log density of every image of ``sizes`` ((N, 2), H, W), in order."""
        sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
        cache: dict[tuple[int, int], tuple[_SizeBlur, torch.Tensor, torch.Tensor]] = {}
        for index, (height, width) in enumerate(sizes):
            key = (int(height), int(width))
            if key not in cache:
                cache.clear()  # images usually come grouped by size; keep one full map at a time
                blur = _SizeBlur(*key, self.bandwidth)
                counts = self._counts(np.ones(len(self.u), bool), *key)
                cache[key] = (blur, counts, blur.of_counts(counts))
            blur, counts, total = cache[key]
            own = self.image == index
            rows, cols = self._pixels(own, *key)
            direct = partial(self._blurred_without, blur, counts, own)
            yield self._finish(held_out_difference(total, blur.of_pixels(rows, cols), direct))

    def _blurred_without(self, blur: _SizeBlur, counts: torch.Tensor, own: np.ndarray) -> torch.Tensor:
        """The blurred count map of all fixations but ``own``, computed directly."""
        return blur.of_counts(counts - self._counts(own, *counts.shape))

    def _pixels(self, keep: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """int64 (rows, cols) of the kept fixations at the target size, pysaliency's truncation."""
        rows = np.minimum((self.v[keep] * height).astype(np.int64), height - 1)
        cols = np.minimum((self.u[keep] * width).astype(np.int64), width - 1)
        return rows, cols

    def _counts(self, keep: np.ndarray, height: int, width: int) -> torch.Tensor:
        rows, cols = self._pixels(keep, height, width)
        flat = torch.as_tensor(rows * width + cols)
        return torch.bincount(flat, minlength=height * width).to(torch.float64).reshape(height, width)

    def _finish(self, blurred: torch.Tensor) -> torch.Tensor:
        height, width = blurred.shape
        mixed = blurred * (1 - self.eps) + self.eps * 1.0 / (height * width)
        log_density = mixed.log()
        return log_density - torch.logsumexp(log_density.reshape(-1), 0)


class _SizeBlur:
    """scipy's ``gaussian_filter(mode="reflect")`` of count maps of one size, as blur matrices."""

    def __init__(self, height: int, width: int, bandwidth: float) -> None:
        self.rows = gaussian_matrix(height, bandwidth * height, "reflect")
        self.cols = gaussian_matrix(width, bandwidth * width, "reflect")

    def of_counts(self, counts: torch.Tensor) -> torch.Tensor:
        """(H, W) blurred count map; sparse maps as a sum of outer products, dense ones as matrix products."""
        nonzero = counts.nonzero()
        if len(nonzero) <= min(counts.shape):
            weights = counts[nonzero[:, 0], nonzero[:, 1]]
            return (self.rows[:, nonzero[:, 0]] * weights) @ self.cols[:, nonzero[:, 1]].T
        return self.rows @ counts @ self.cols.T

    def of_pixels(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        """(H, W) blurred counts of fixations on pixels ``(rows, cols)`` (duplicates count)."""
        return self.rows[:, torch.as_tensor(rows)] @ self.cols[:, torch.as_tensor(cols)].T
