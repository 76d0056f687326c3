"""The saliency map a probabilistic model is scored with on each metric, and empirical fixation maps.

A density p(x | I) is not itself the best saliency map for every metric; the benchmark scores a
probabilistic model on the map that maximises each metric's expected value under the model
(Kümmerer, Wallis & Bethge 2018, "Saliency benchmarking made easy"), as its code does:

=========  ==========================================================================
metric     map derived from the model's log density ``log p``
=========  ==========================================================================
IG, LL     ``log p`` itself
AUC        ``p`` (equalised by the benchmark: ranks with ties ordered by pixel index)
sAUC       ``log p - log p_shuffled`` (equalised too); ``p_shuffled``: mean density of all *other* images
NSS        ``p``
CC, KLDiv  ``p`` blurred by a Gaussian of 24 px (MIT300/MIT1003), zero padding at the borders
SIM        the benchmark optimises this map numerically; we use the CC map (an approximation that
           scores somewhat lower than the benchmark's optimised map)
=========  ==========================================================================

Empirical maps (the reference for CC, KLDiv, SIM): fixation counts per pixel (duplicates add up)
blurred by a Gaussian of 23.99 px with mirrored borders, as the benchmark builds them. Use 40 px for
CAT2000-sized images. Functions return a (B, H, W) tensor when all images have one size, else a
list of (H, W) tensors; computation follows the input device.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..baselines.blur import gaussian_blur, impulse_responses, upsampled_gaussian_blur
from ..errors import EvaluationError
from .inputs import ArrayLike, Maps, MapsLike, ScoredFixations

#: Blur of the model density for the CC and KLDiv maps (pixels; the benchmark's MIT value).
MODEL_SIGMA = 24.0
#: Blur of the empirical fixation maps (pixels; the benchmark's MIT value).
EMPIRICAL_SIGMA = 23.99
#: Where pysaliency averages densities of images of different sizes for ``p_shuffled`` (rows, cols).
SHUFFLE_COMPUTE_SIZE = (500, 500)


def density_maps(log_densities: MapsLike) -> torch.Tensor | list[torch.Tensor]:
    """``p = exp(log p)``: the AUC and NSS map of a probabilistic model."""
    maps = Maps(log_densities, "log_densities", allow_neg_inf=True)
    return _collect(maps, lambda indices, chunk: chunk.exp())


def blurred_density_maps(
    log_densities: MapsLike, sigma: float = MODEL_SIGMA, mode: str = "constant"
) -> torch.Tensor | list[torch.Tensor]:
    """``p`` blurred by a Gaussian of ``sigma`` pixels (zero padding): the CC, KLDiv (and our SIM) map."""
    maps = Maps(log_densities, "log_densities", allow_neg_inf=True)
    return _collect(maps, lambda indices, chunk: blurred_density_chunk(chunk, sigma, mode))


def blurred_density_chunk(
    log_densities: torch.Tensor, sigma: float, mode: str = "constant", grid: torch.Tensor | None = None
) -> torch.Tensor:
    """(C, H, W) float64 ``exp(log p)`` blurred by a Gaussian of ``sigma`` pixels: a new tensor.

    ``grid``: `upsampled_grid` of ``log_densities`` if already known (else it is looked for). On such
    maps the density is formed and blurred on the grid, a quarter of the pixels (the same sums
    regrouped: equal to the full-resolution blur to ~1e-15 relative).
    """
    grid = upsampled_grid(log_densities) if grid is None else grid
    if grid is not None:
        return upsampled_gaussian_blur(_exp64(grid), GRID_FACTOR, sigma, mode)
    return gaussian_blur(_exp64(log_densities), sigma, mode)


#: The block size of `upsampled_grid` (DeepGaze nearest-upsamples its output grid by 2).
GRID_FACTOR = 2


def upsampled_grid(maps: torch.Tensor) -> torch.Tensor | None:
    """The (C, H / 2, W / 2) grid of (C, H, W) maps that repeat every value on 2 x 2 blocks, else None.

    DeepGaze's log densities are nearest-upsampled from a half-resolution grid, so their blurred
    density and NSS can be computed on the grid. Exact test (one pass over the maps); a view.
    """
    count, height, width = maps.shape
    if height % GRID_FACTOR or width % GRID_FACTOR:
        return None
    blocks = maps.reshape(count, height // 2, 2, width // 2, 2)
    top = blocks[:, :, 0]
    if torch.equal(top, blocks[:, :, 1]) and torch.equal(top[..., 0], top[..., 1]):
        return top[..., 0]
    return None


def grid_pixels(pixel: torch.Tensor, width: int) -> torch.Tensor:
    """Flat indices into the `upsampled_grid` of maps ``width`` wide for flat full-resolution ``pixel``."""
    return (pixel // width // GRID_FACTOR) * (width // GRID_FACTOR) + (pixel % width) // GRID_FACTOR


def _exp64(log_densities: torch.Tensor) -> torch.Tensor:
    return torch.empty(log_densities.shape, dtype=torch.float64, device=log_densities.device).copy_(log_densities).exp_()


def shuffled_baseline_log_densities(
    log_densities: MapsLike, compute_size: tuple[int, int] | None = None
) -> torch.Tensor | list[torch.Tensor]:
    """``log p_shuffled`` for every image: the log of the mean density of all other images.

    When all images have one size the average is taken at that size (exact). Otherwise, as
    pysaliency does, every log density is resized bilinearly (corner-aligned, like
    ``scipy.ndimage.zoom(order=1)``) to ``compute_size`` (default 500 x 500) and renormalised, the
    densities are averaged there, and each image's leave-one-out average is resized back and
    renormalised. Pass ``compute_size=(500, 500)`` to reproduce pysaliency also for equal sizes.
    """
    maps = Maps(log_densities, "log_densities", allow_neg_inf=True)
    baseline = ShuffledBaseline(maps, compute_size)
    return _collect(maps, lambda indices, chunk: _normalised(baseline.log_density_at(indices, chunk).view_as(chunk)))


def sauc_maps(log_densities: MapsLike, compute_size: tuple[int, int] | None = None) -> torch.Tensor | list[torch.Tensor]:
    """``log p - log p_shuffled``: the sAUC map of a probabilistic model (float64)."""
    maps = Maps(log_densities, "log_densities", allow_neg_inf=True)
    baseline = ShuffledBaseline(maps, compute_size)
    return _collect(maps, lambda indices, chunk: chunk.to(torch.float64) - baseline.log_density_at(indices, chunk).view_as(chunk))


def empirical_saliency_maps(
    x: ArrayLike,
    y: ArrayLike,
    n: ArrayLike,
    sizes: Sequence[tuple[int, int]],
    sigma: float = EMPIRICAL_SIGMA,
    mode: str = "reflect",
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor | list[torch.Tensor]:
    """Fixation counts per pixel ``(int(y), int(x))``, blurred by a Gaussian of ``sigma`` pixels.

    ``sizes``: (H, W) of every image; images without fixations get an all-zero map. float64.
    """
    sizes = [tuple(int(v) for v in size) for size in sizes]
    fixations = ScoredFixations(x, y, n, sizes, torch.device(device) if device is not None else torch.device("cpu"))
    out: list[torch.Tensor | None] = [None] * len(sizes)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(size, []).append(i)
    for size, members in groups.items():
        for start in range(0, len(members), 64):
            indices = members[start : start + 64]
            for i, empirical in zip(indices, empirical_chunk(fixations, indices, size, sigma, mode)):
                out[i] = empirical
    return _stack_if_one_size(out)


def empirical_chunk(
    fixations: ScoredFixations, indices: Sequence[int], size: tuple[int, int], sigma: float, mode: str
) -> torch.Tensor:
    """(C, H, W) float64 empirical maps of images ``indices`` (all of ``size``).

    The blur is linear, so the blurred count map is the sum over fixations of one row of the
    row-blur matrix times one row of the column-blur matrix: ``R[:, rows] @ C[:, cols]^T``.
    """
    height, width = size
    position, valid = fixations.padded(indices)
    rows = torch.where(valid, fixations.y[position].long(), 0)
    cols = torch.where(valid, fixations.x[position].long(), 0)
    weight = valid.to(torch.float64)[:, None, :]
    left = impulse_responses(height, sigma, mode, rows).permute(1, 0, 2) * weight  # (C, H, Fm)
    right = impulse_responses(width, sigma, mode, cols).permute(1, 2, 0)  # (C, Fm, W)
    return left @ right


class EmpiricalCache:
    """Empirical maps kept from one `evaluate_log_densities` call to the next on the same fixations (an
    evaluation scores several models, each against the same empirical maps); pass one instance as
    ``empirical_cache=`` to every call. Keeps ``prepare(empirical_chunk(...))`` by (fixations,
    images, size, sigma, border, what).

    The fixations are recognised by their values (a hash of x, y and n), not by identity; only the
    last set of fixations is kept, and at most ``max_bytes`` of tensors (default 512 MiB), beyond
    which maps are made again. Kept results must not be modified. Memory is released with the
    instance.
    """

    def __init__(self, max_bytes: int = 1 << 29) -> None:
        self.max_bytes = int(max_bytes)
        self._key: tuple | None = None
        self._kept: dict[tuple, Any] = {}
        self._bytes = 0

    def get(
        self,
        fixations: ScoredFixations,
        indices: Sequence[int],
        size: tuple[int, int],
        sigma: float,
        mode: str,
        prepare: Callable[[torch.Tensor], Any],
        what: Hashable,
    ) -> Any:
        """``prepare(empirical_chunk(fixations, indices, size, sigma, mode))``, kept; ``what`` names ``prepare``."""
        key = (fixations.fingerprint(), fixations.num_images, str(fixations.x.device))
        if key != self._key:
            self._key, self._kept, self._bytes = key, {}, 0
        entry = (tuple(int(i) for i in indices), tuple(size), float(sigma), mode, what)
        result = self._kept.get(entry)
        if result is None:
            result = prepare(empirical_chunk(fixations, indices, size, sigma, mode))
            tensors = [value for value in (result if isinstance(result, tuple) else (result,)) if isinstance(value, torch.Tensor)]
            size_bytes = sum(value.numel() * value.element_size() for value in tensors)
            if self._bytes + size_bytes <= self.max_bytes:
                self._kept[entry] = result
                self._bytes += size_bytes
        return result


class ShuffledBaseline:
    """``log p_shuffled`` of each image of a set of log densities, evaluated where it is needed.

    ``p_shuffled`` for image i is the mean density of all other images: ``(S - p_i) / (B - 1)`` with
    ``S`` the sum of all B densities. With one image size this is exact at any pixels and needs only
    the densities at those pixels; otherwise see `shuffled_baseline_log_densities`.
    """

    def __init__(self, maps: Maps, compute_size: tuple[int, int] | None = None) -> None:
        if len(maps) < 2:
            raise EvaluationError("the shuffled baseline (sAUC) needs log densities of at least two images")
        self.maps = maps
        self.native = compute_size is None and len(set(maps.sizes)) == 1
        self.size = tuple(maps.sizes[0]) if self.native else tuple(compute_size or SHUFFLE_COMPUTE_SIZE)
        self._pixels: torch.Tensor | None = None
        self._sum_at_pixels: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None
        if not self.native:
            total = torch.zeros(self.size, dtype=torch.float64, device=maps.device)
            for _, chunk in maps.chunks():
                total += self._resized_density(chunk).sum(0)
            self._sum = total

    def log_density_at(
        self, indices: Sequence[int], chunk: torch.Tensor, pixels: torch.Tensor | None = None, own: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(C, P) float64 ``log p_shuffled`` of images ``indices`` at flat ``pixels`` (default: all).

        ``chunk`` (C, H, W): those images' own log densities; ``own`` (C, P): their values at
        ``pixels`` if already read. Not renormalised when exact (the mean of normalised densities is
        normalised).
        """
        flat = chunk.reshape(chunk.shape[0], -1)
        count = len(self.maps)
        if self.native:
            if own is None:
                own = flat if pixels is None else flat.index_select(1, pixels)
            own = own.to(torch.float64).exp()
            others = self._total_at(pixels) - own
        else:
            others = (self._sum - self._resized_density(chunk)).reshape(chunk.shape[0], -1)
        log_shuffled = torch.log(others.clamp_min(torch.finfo(torch.float64).tiny) / (count - 1))
        if not self.native:
            full = _resize_log_density(log_shuffled.view(chunk.shape[0], *self.size), tuple(chunk.shape[1:]))
            log_shuffled = full.reshape(chunk.shape[0], -1)
            if pixels is not None:
                log_shuffled = log_shuffled.index_select(1, pixels)
        return log_shuffled

    def _total_at(self, pixels: torch.Tensor | None) -> torch.Tensor:
        if self._sum_at_pixels is None or self._pixels is not pixels:
            total = None
            for _, chunk in self.maps.chunks():
                flat = chunk.reshape(chunk.shape[0], -1)
                part = (flat if pixels is None else flat.index_select(1, pixels)).to(torch.float64).exp().sum(0)
                total = part if total is None else total + part
            self._pixels, self._sum_at_pixels = pixels, total
        return self._sum_at_pixels

    def _resized_density(self, chunk: torch.Tensor) -> torch.Tensor:
        return _resize_log_density(chunk.to(torch.float64), self.size).exp()


def _resize_log_density(log_density: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (C, h, w) log densities bilinearly (corner-aligned) to ``size`` and renormalise."""
    if tuple(log_density.shape[-2:]) != tuple(size):
        finite = torch.where(torch.isfinite(log_density), log_density, torch.finfo(log_density.dtype).min / 4)
        log_density = F.interpolate(finite[:, None], size=size, mode="bilinear", align_corners=True)[:, 0]
    return _normalised(log_density)


def _normalised(log_density: torch.Tensor) -> torch.Tensor:
    return log_density - log_density.logsumexp(dim=(-2, -1), keepdim=True)


def _collect(maps: Maps, produce: Callable[[list[int], torch.Tensor], torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    out: list[torch.Tensor | None] = [None] * len(maps)
    for indices, chunk in maps.chunks():
        for i, result in zip(indices, produce(indices, chunk)):
            out[i] = result
    return _stack_if_one_size(out)


def _stack_if_one_size(maps: list) -> torch.Tensor | list[torch.Tensor]:
    if maps and len({tuple(m.shape) for m in maps}) == 1:
        return torch.stack(maps)
    return maps

