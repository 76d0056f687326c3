"""The centre-bias baseline: where people look regardless of the image (see docs/design.md).

Model: fixation positions normalised by image width and height, (u, v) = (x / W, y / H), a
Gaussian kernel density estimate with bandwidth h (a fraction of the width along x and of the
height along y; kernels truncated to the image, see `kde`), mixed with a uniform density:

    p(pixel) = (1 - w) * KDE mass of the pixel + w / (H W)

The kernels sit on a ``grid_size`` x ``grid_size`` histogram of the normalised positions (bin
centres; 256 bins put every kernel within 1/512 of the image size of its fixation, a fraction of
any useful bandwidth), so evaluating at any image size costs a few matrix products.

Fitting chooses h and w by **leave-one-image-out cross-validated log-likelihood**: each fixation
is scored by the KDE of the fixations of all *other* images (computed exactly: the image's own
kernels are subtracted from the full estimate), with w profiled out (the log-likelihood is concave
in w) and log10(h) maximised by a grid and golden-section search. When the number of same-image
fixation pairs exceeds ``max_pairs`` (e.g. SALICON mouse data) it uses 10-fold cross-validation
over images instead, and says so in ``cv``. Reference values: h = 0.0217 (SALICON),
h = 10^-1.667 ~ 0.0215 with w = 10^-14.9 (MIT1003).

`CenterBiasModel.template` gives the (rows, cols) log density that `DeepGaze.set_centerbias`
stores; `CenterBiasModel.log_density` evaluates the model at any (H, W) directly.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from ..io.atomic import atomic_write_bytes
from .inputs import selected_fixations
from .kde import (
    PairChunks,
    best_mixture_weight,
    cell_masses,
    held_out_difference,
    interval_mass,
    maximize,
    normalised_log,
    pair_count,
)

#: Smallest uniform weight considered (the MIT1003 reference fit is 10^-14.9).
MIN_UNIFORM_WEIGHT = 1e-20
#: log10 of the bandwidth range searched.
LOG10_BANDWIDTH_RANGE = (-3.0, 0.0)


@dataclass
class CenterBiasModel:
    """A fitted centre bias. All log densities are natural logs of per-pixel probabilities.

    Attributes:
        bandwidth: kernel std as a fraction of the image width (x) and height (y).
        uniform_weight: weight w of the uniform density in the mixture.
        histogram: float64 (grid, grid) counts of normalised fixation positions, rows = y.
        cv_log_likelihood: cross-validated mean log-likelihood per fixation relative to a uniform
            density, nats (divide by ln 2 for bits); None if not fitted here.
        cv: how it was cross-validated ("leave-one-image-out", "10-fold over images", "none").
    """

    bandwidth: float
    uniform_weight: float
    histogram: torch.Tensor
    cv_log_likelihood: float | None = None
    cv: str = "none"

    @property
    def grid_size(self) -> int:
        return int(self.histogram.shape[0])

    def log_density(self, size, device: torch.device | str | None = None) -> torch.Tensor:
        """float32 (H, W) log density for an image of ``size`` = (H, W); ``exp`` sums to 1."""
        height, width = int(size[0]), int(size[1])
        centres = self._centres(device)
        hist = self.histogram.to(centres.device)
        rows, cols = cell_masses(height, centres, self.bandwidth), cell_masses(width, centres, self.bandwidth)
        mass = rows @ hist @ cols.T / self._normaliser(centres, hist)
        density = (1 - self.uniform_weight) * mass + self.uniform_weight / (height * width)
        return normalised_log(density, overwrite=True)

    def crossvalidated_log_densities(self, data) -> Iterator[torch.Tensor]:
        """float32 (H, W) log density of every image of ``data`` (a `FixationDataset` or a
        ``(Fixations, image_sizes)`` pair, the data this model was fitted on), in order, from the
        fixations of all *other* images: the histogram without the image's own fixations (binned as
        `fit_centerbias` bins them), with the fitted bandwidth and uniform weight.

        The kernel sum of all fixations is made once per image size; each image then costs one
        subtraction of its own kernels (`kde.held_out_difference`).
        """
        fixations, sizes = selected_fixations(data)
        grid = self.grid_size
        size = sizes[fixations.image]
        bin_col = np.clip((fixations.x / size[:, 1] * grid).astype(np.int64), 0, grid - 1)
        bin_row = np.clip((fixations.y / size[:, 0] * grid).astype(np.int64), 0, grid - 1)
        centres = self._centres(None)
        inside = cell_masses(1, centres, self.bandwidth)[0]
        normaliser = inside @ self.histogram @ inside
        current = None
        for index, (height, width) in enumerate(sizes):
            if current is None or current[0] != (height, width):
                rows, cols = cell_masses(int(height), centres, self.bandwidth), cell_masses(int(width), centres, self.bandwidth)
                current = ((height, width), rows, cols, rows @ self.histogram @ cols.T)
            _, rows, cols, total = current
            own = np.flatnonzero(fixations.image == index)
            own_rows, own_cols = torch.as_tensor(bin_row[own]), torch.as_tensor(bin_col[own])
            own_mass = rows[:, own_rows] @ cols[:, own_cols].T
            own_hist = torch.zeros_like(self.histogram).index_put_((own_rows, own_cols), torch.ones(len(own), dtype=torch.float64), accumulate=True)
            direct = partial(_kernel_sum, rows, self.histogram - own_hist, cols)
            mass = held_out_difference(total, own_mass, direct) / (normaliser - inside[own_rows] @ inside[own_cols])
            yield normalised_log((1 - self.uniform_weight) * mass.clamp_min(0.0) + self.uniform_weight / (height * width), overwrite=True)

    def template(self, shape=(256, 256)) -> torch.Tensor:
        """The (rows, cols) log-density template over normalised coordinates for `DeepGaze.set_centerbias`."""
        return self.log_density(shape)

    def log_likelihoods(self, data, images=None) -> np.ndarray:
        """float64 (F,) log-probability (nats) of the pixel of each fixation of ``data``.

        ``data`` is a `FixationDataset` or a ``(Fixations, image_sizes)`` pair; with ``images``
        only the fixations on those image indices, in dataset order.
        """
        fixations, sizes = selected_fixations(data, images)
        return self.fixation_log_likelihoods(fixations.x, fixations.y, sizes[fixations.image])

    def fixation_log_likelihoods(self, x: np.ndarray, y: np.ndarray, sizes: np.ndarray, chunk: int = 16384) -> np.ndarray:
        """float64 (F,) log-probability of pixel (int(y), int(x)) in images of ``sizes`` (F, 2)."""
        out = np.empty(len(x))
        centres = self._centres(None)
        normaliser = self._normaliser(centres, self.histogram)
        sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
        unique, which = np.unique(sizes, axis=0, return_inverse=True)
        for s, (height, width) in enumerate(unique):
            members = np.flatnonzero(which.reshape(-1) == s)
            for part in np.array_split(members, max(1, -(-len(members) // chunk))):
                row = torch.as_tensor(np.floor(y[part]))
                col = torch.as_tensor(np.floor(x[part]))
                rows = interval_mass(row[:, None] / height, (row[:, None] + 1) / height, centres[None, :], self.bandwidth)
                cols = interval_mass(col[:, None] / width, (col[:, None] + 1) / width, centres[None, :], self.bandwidth)
                mass = ((rows @ self.histogram) * cols).sum(1) / normaliser
                density = (1 - self.uniform_weight) * mass + self.uniform_weight / (height * width)
                out[part] = density.log().numpy()
        return out

    def _centres(self, device) -> torch.Tensor:
        return (torch.arange(self.grid_size, dtype=torch.float64, device=device) + 0.5) / self.grid_size

    def _normaliser(self, centres: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
        inside = cell_masses(1, centres, self.bandwidth)[0]  # mass of each kernel inside [0, 1]
        return inside @ hist @ inside

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the model to an ``.npz`` file atomically."""
        buffer = io.BytesIO()
        np.savez(
            buffer, bandwidth=self.bandwidth, uniform_weight=self.uniform_weight, histogram=self.histogram.cpu().numpy(),
            cv_log_likelihood=np.nan if self.cv_log_likelihood is None else self.cv_log_likelihood, cv=self.cv,
        )
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CenterBiasModel:
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                cv_ll = float(data["cv_log_likelihood"])
                return cls(
                    bandwidth=float(data["bandwidth"]), uniform_weight=float(data["uniform_weight"]),
                    histogram=torch.as_tensor(data["histogram"], dtype=torch.float64),
                    cv_log_likelihood=None if math.isnan(cv_ll) else cv_ll, cv=str(data["cv"]),
                )
        except (OSError, KeyError, ValueError) as error:
            raise DatasetError(f"{path}: not a centre-bias file written by CenterBiasModel.save ({error})") from None


def fit_centerbias(
    data,
    images=None,
    *,
    grid_size: int = 256,
    max_pairs: int = 50_000_000,
    device: torch.device | str = "cpu",
) -> CenterBiasModel:
    """Fit a `CenterBiasModel` to the fixations of ``data`` (see the module docstring).

    Args:
        data: a `FixationDataset` or a ``(Fixations, image_sizes)`` pair.
        images: image indices to fit on (e.g. a training fold); default all.
        grid_size: bins per axis of the normalised-position histogram.
        max_pairs: above this many same-image fixation pairs, 10-fold CV replaces leave-one-image-out.
        device: where the computation runs.
    """
    fixations, sizes = selected_fixations(data, images)
    if len(np.unique(fixations.image)) < 2:
        raise DatasetError("fitting a centre bias needs fixations on at least two images (it is cross-validated over images)")
    held_out = _HeldOutRatios(fixations, sizes, grid_size, pair_count(fixations.image) <= max_pairs, device)

    def scored(log10_bandwidth: float) -> tuple[float, float]:
        """(mean held-out log-likelihood relative to uniform, nats; best uniform weight)."""
        r = held_out(10.0**log10_bandwidth)
        w = best_mixture_weight(r, torch.ones_like(r), MIN_UNIFORM_WEIGHT)
        return float(torch.log((1 - w) * r + w).mean()), w

    log10_h, cv_ll = maximize(lambda value: scored(value)[0], *LOG10_BANDWIDTH_RANGE)
    _, w = scored(log10_h)
    return CenterBiasModel(
        bandwidth=10.0**log10_h, uniform_weight=w, histogram=held_out.hist.cpu(), cv_log_likelihood=cv_ll,
        cv="leave-one-image-out" if held_out.leave_one_out else "10-fold over images",
    )


def _kernel_sum(rows: torch.Tensor, histogram: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(H, W) sum of the kernels of a (grid, grid) histogram: ``rows @ histogram @ cols^T``."""
    return rows @ histogram @ cols.T


class _HeldOutRatios:
    """For each fixation: the density of its histogram bin under the KDE of the fixations of the
    *other* images (leave-one-image-out, exact) or of the other 9 folds of images, relative to a
    uniform density, for any bandwidth.

    The fixations are binned once on a (grid, grid) histogram of normalised positions; leaving an
    image out subtracts its own kernels (pair geometry computed once, see `PairChunks`).
    """

    def __init__(self, fixations, sizes: np.ndarray, grid: int, leave_one_out: bool, device) -> None:
        size = sizes[fixations.image]
        self.grid, self.leave_one_out, self.device = grid, leave_one_out, device
        self.bx = torch.as_tensor(np.clip((fixations.x / size[:, 1] * grid).astype(np.int64), 0, grid - 1), device=device)
        self.by = torch.as_tensor(np.clip((fixations.y / size[:, 0] * grid).astype(np.int64), 0, grid - 1), device=device)
        self.image = torch.as_tensor(fixations.image, device=device)
        self.flat_bins = self.by * grid + self.bx
        self.hist = torch.bincount(self.flat_bins, minlength=grid * grid).double().reshape(grid, grid)
        self.centres = (torch.arange(grid, dtype=torch.float64, device=device) + 0.5) / grid
        by, bx = self.by, self.bx
        if leave_one_out:  # per same-image pair: the flat (bin of j, kernel bin of k) index along y and x
            self.pairs = PairChunks(self.image, lambda j, k: (j, by[j] * grid + by[k], bx[j] * grid + bx[k]))
        else:
            self.folds = self.image % 10

    def __call__(self, bandwidth: float) -> torch.Tensor:
        """float64 (F,) held-out density of each fixation's bin relative to uniform."""
        grid, by, bx = self.grid, self.by, self.bx
        masses = cell_masses(grid, self.centres, bandwidth)  # (bins, kernel centres), same along x and y
        inside = masses.sum(0)
        total = (masses @ self.hist @ masses.T)[by, bx]
        normaliser = inside @ self.hist @ inside
        if self.leave_one_out:
            own = torch.zeros_like(total)
            flat = masses.reshape(-1)
            for j, y_pair, x_pair in self.pairs:
                own.index_add_(0, j, flat[y_pair] * flat[x_pair])
            kernel_inside = inside[by] * inside[bx]
            own_normaliser = torch.zeros(int(self.image.max()) + 1, dtype=torch.float64, device=self.device)
            own_normaliser = own_normaliser.index_add_(0, self.image, kernel_inside)[self.image]
        else:
            own = torch.empty_like(total)
            own_normaliser = torch.empty_like(total)
            for fold in range(10):
                members = self.folds == fold
                fold_hist = torch.bincount(self.flat_bins[members], minlength=grid * grid).double().reshape(grid, grid)
                own[members] = (masses @ fold_hist @ masses.T)[by[members], bx[members]]
                own_normaliser[members] = inside @ fold_hist @ inside
        held_out = (total - own).clamp_min(0.0) / (normaliser - own_normaliser).clamp_min(1e-300)
        return held_out * grid * grid
