"""Gaussian blur with scipy.ndimage.gaussian_filter's kernel and border rules, as matrices.

The benchmark blurs fixation maps and model densities with ``scipy.ndimage.gaussian_filter``: taps
``exp(-t**2 / (2 sigma**2))`` for ``|t| <= int(truncate * sigma + 0.5)`` normalised to sum 1, applied
along rows and columns. Borders: ``"reflect"`` (mirror about the edge, ``c b a | a b c``; scipy's
default, used for empirical fixation maps), ``"constant"`` (zeros outside; used for the model's CC
and KLDiv maps) or ``"nearest"`` (edge value repeated). A blur along one axis of length L is the
(L, L) matrix ``M`` with ``blur(x) = M @ x``; an image is blurred as ``M_rows @ X @ M_cols^T``.
"""

from __future__ import annotations

import torch

from ..errors import EvaluationError

BORDER_MODES = ("reflect", "constant", "nearest")


def gaussian_matrix(
    size: int, sigma: float, mode: str = "reflect", *, truncate: float = 4.0, dtype=torch.float64, device=None
) -> torch.Tensor:
    """(size, size) matrix of a 1-d Gaussian blur of std ``sigma`` pixels with the given border rule."""
    if mode not in BORDER_MODES:
        raise EvaluationError(f"blur border mode must be one of {BORDER_MODES}, got {mode!r}")
    if sigma < 0:
        raise EvaluationError(f"blur sigma must be >= 0 pixels, got {sigma}")
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=device)
    weights = torch.exp(-0.5 * offsets.to(torch.float64) ** 2 / max(sigma, 1e-300) ** 2) if radius else torch.ones(1, dtype=torch.float64, device=device)
    weights = (weights / weights.sum()).to(dtype)
    rows = torch.arange(size, device=device)[:, None].expand(size, len(offsets))
    source = rows + offsets[None, :]
    keep = torch.ones_like(source, dtype=torch.bool)
    if mode == "reflect":
        source = source % (2 * size)
        source = torch.where(source >= size, 2 * size - 1 - source, source)
    elif mode == "nearest":
        source = source.clamp(0, size - 1)
    else:
        keep = (source >= 0) & (source < size)
    matrix = torch.zeros(size, size, dtype=dtype, device=device)
    matrix.index_put_((rows[keep], source[keep]), weights.expand_as(source)[keep], accumulate=True)
    return matrix


def gaussian_blur(maps: torch.Tensor, sigma: float, mode: str = "reflect", *, truncate: float = 4.0) -> torch.Tensor:
    """Blur (..., H, W) maps by a Gaussian of std ``sigma`` pixels, like ``gaussian_filter`` per map."""
    height, width = maps.shape[-2:]
    rows = gaussian_matrix(height, sigma, mode, truncate=truncate, dtype=maps.dtype, device=maps.device)
    cols = gaussian_matrix(width, sigma, mode, truncate=truncate, dtype=maps.dtype, device=maps.device)
    return rows @ maps @ cols.T
