"""Shared numerics of the baseline models: pixel-integrated Gaussian kernels and 1-d maximisation.

Both baselines are Gaussian kernel density estimates in *normalised* image coordinates
(u = x / W, v = y / H), with one bandwidth h as a fraction of the width (along x) and of the
height (along y). A kernel's probability for a pixel is its mass over the pixel's area,

    mass = [Phi((c + 1) / W - u_k) / h) - Phi((c / W - u_k) / h)] * [same along y],

so a density map sums exactly to the kernel mass inside the image (then divided by it: the kernels
are truncated to the image and renormalised) and there is no discretisation error even when a
kernel is narrower than a pixel. Everything runs in float64 torch on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch


def interval_mass(low: torch.Tensor, high: torch.Tensor, centre: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Mass of N(centre, bandwidth^2) in [low, high], broadcast, accurate in both tails."""
    return standard_interval_mass((low - centre) / bandwidth, (high - centre) / bandwidth)


def standard_interval_mass(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mass of N(0, 1) in [a, b] (a <= b). Right of 0 the interval is mirrored to the left, where
    Phi keeps full precision, so far-tail masses are not lost to cancellation."""
    sign = 1.0 - 2.0 * (a > 0).to(a.dtype)
    return (sign * (torch.special.ndtr(sign * b) - torch.special.ndtr(sign * a))).clamp_min(0.0)


def cell_masses(cells: int, centres: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """(cells, n): mass of each kernel in each of ``cells`` equal cells of [0, 1]."""
    edges = torch.arange(cells + 1, dtype=centres.dtype, device=centres.device) / cells
    return interval_mass(edges[:-1, None], edges[1:, None], centres[None, :], bandwidth)


#: Relative share of the other images below which a leave-one-image-out map is recomputed directly.
RECOMPUTE_BELOW = 1e-6


def held_out_difference(total: torch.Tensor, own: torch.Tensor, direct: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``total - own``: a kernel sum over all images minus one image's own kernels (both (H, W),
    non-negative), or ``direct()`` (the sum over the other images computed from scratch) where some
    pixel has own kernels but the others' share is below `RECOMPUTE_BELOW` of its total, so that
    the difference would keep too few significant digits (e.g. a corner only the image reaches)."""
    held_out = total - own
    if bool(((own > 0) & (held_out <= RECOMPUTE_BELOW * total)).any()):
        return direct()
    return held_out


def normalised_log(density: torch.Tensor, *, overwrite: bool = False) -> torch.Tensor:
    """float32 log of (..., H, W) non-negative float64 densities, each (H, W) map divided by its sum
    (so that its ``exp`` sums to 1). With ``overwrite``, ``density`` is used as work space."""
    total = density.sum((-2, -1), keepdim=True).log_()
    logs = density.log_() if overwrite else density.log()
    out = torch.empty(density.shape, dtype=torch.float32, device=density.device)
    return torch.sub(logs, total, out=out)  # the float64 difference, rounded once to float32


def within_image_pairs(image: torch.Tensor, max_pairs: int = 4_000_000) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """All (j, k) index pairs of fixations on the same image (j == k included), in chunks.

    ``image`` is int64 (F,). Chunks hold at most ``max_pairs`` pairs unless one image alone has more.
    """
    order = torch.argsort(image, stable=True)
    sorted_image = image[order]
    _, counts = torch.unique_consecutive(sorted_image, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    per_fixation = torch.repeat_interleave(counts, counts)  # pairs of each (sorted) fixation
    first = torch.repeat_interleave(starts, counts)  # first sorted position of its image
    boundaries = torch.cumsum(per_fixation, 0)
    begin = 0
    while begin < len(order):
        limit = (int(boundaries[begin - 1]) if begin else 0) + max_pairs
        end = max(int(torch.searchsorted(boundaries, torch.tensor(limit, device=boundaries.device), right=True)), begin + 1)
        counts_chunk = per_fixation[begin:end]
        j_pos = torch.repeat_interleave(torch.arange(begin, end, device=image.device), counts_chunk)
        offset = torch.arange(len(j_pos), device=image.device) - torch.repeat_interleave(torch.cumsum(counts_chunk, 0) - counts_chunk, counts_chunk)
        k_pos = first[j_pos] + offset
        yield order[j_pos], order[k_pos]
        begin = end


def pair_count(image: np.ndarray) -> int:
    """Number of same-image pairs, sum over images of (fixations on it)^2."""
    counts = np.bincount(np.asarray(image)) if len(image) else np.zeros(0, np.int64)
    return int((counts.astype(np.int64) ** 2).sum())


class PairChunks:
    """Per-pair quantities ``make(j, k)`` for all same-image pairs, computed once and kept when
    there are at most ``max_cached`` pairs, else recomputed on every iteration (bounded memory)."""

    def __init__(self, image: torch.Tensor, make: Callable, max_cached: int = 40_000_000) -> None:
        self.image, self.make = image, make
        fits = pair_count(image.cpu().numpy()) <= max_cached
        self.cached = [make(j, k) for j, k in within_image_pairs(image)] if fits else None

    def __iter__(self):
        if self.cached is not None:
            return iter(self.cached)
        return (self.make(j, k) for j, k in within_image_pairs(self.image))


def best_mixture_weight(a: torch.Tensor, b: torch.Tensor, low: float) -> float:
    """argmax over w in [low, 1] of mean(log((1 - w) a + w b)), a concave function of w.

    Bisection on the sign of the derivative, in log10(w); ``a`` and ``b`` are non-negative.
    """
    def slope(w: float) -> float:
        return float(((b - a) / ((1 - w) * a + w * b).clamp_min(1e-300)).mean())

    if slope(1.0) >= 0:
        return 1.0
    if slope(low) <= 0:
        return low
    lo, hi = math.log10(low), 0.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(10**mid) > 0 else (lo, mid)
    return 10 ** (0.5 * (lo + hi))


def maximize(objective: Callable[[float], float], low: float, high: float, *, points: int = 7, tolerance: float = 0.01) -> tuple[float, float]:
    """Maximise a function of one variable on [low, high]: a grid of ``points``, then golden section.

    Returns (argmax, max). The golden-section search runs in the grid interval around the best
    grid point, down to ``tolerance``.
    """
    grid = np.linspace(low, high, points)
    values = [objective(float(x)) for x in grid]
    best = int(np.argmax(values))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, points - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = objective(c), objective(d)
    while b - a > tolerance:
        if fc > fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = objective(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = objective(d)
    candidates = [(values[best], float(grid[best])), (fc, c), (fd, d)]
    value, x = max(candidates)
    return float(x), float(value)
