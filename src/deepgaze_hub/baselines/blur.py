"""Gaussian blur with scipy.ndimage.gaussian_filter's kernel and border rules, as banded matrices.

The benchmark blurs fixation maps and model densities with ``scipy.ndimage.gaussian_filter``: taps
``exp(-t**2 / (2 sigma**2))`` for ``|t| <= int(truncate * sigma + 0.5)`` normalised to sum 1, applied
along rows and columns. Borders: ``"reflect"`` (mirror about the edge, ``c b a | a b c``; scipy's
default, used for empirical fixation maps), ``"constant"`` (zeros outside; used for the model's CC
and KLDiv maps) or ``"nearest"`` (edge value repeated). A blur along one axis of length L is the
(L, L) matrix ``M`` with ``blur(x) = M @ x``; an image is blurred as ``M_rows @ X @ M_cols^T``.

Away from the borders the matrix is a band of ``2 * radius + 1`` diagonals, so `gaussian_blur`
multiplies one block of output rows (columns) at a time by only the input rows (columns) the block
reaches: the same products as the dense ``M @ X`` without the exact zeros (results equal to ~1e-16
relative, every pixel), at a fraction of the cost when the radius is small next to the image.
Units: sigma and radius in pixels; maps (..., H, W).
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
    block = max(MIN_BLOCK, int(truncate * sigma + 0.5))
    return banded_product(banded_product(maps, cols, block, along_rows=False), rows, block, along_rows=True)


#: Smallest block of outputs computed by one matrix product in `banded_product`.
MIN_BLOCK = 64


def banded_product(maps: torch.Tensor, matrix: torch.Tensor, block: int, *, along_rows: bool) -> torch.Tensor:
    """``matrix @ maps`` (``along_rows``) or ``maps @ matrix.T``, a block of ``block`` outputs at a
    time from only the inputs the block's rows of ``matrix`` reach (its nonzero column span)."""
    size = matrix.shape[0]
    nonzero = matrix != 0
    positions = torch.arange(size, device=matrix.device)
    first = torch.where(nonzero, positions, size).amin(1)
    last = torch.where(nonzero, positions, -1).amax(1)
    out = torch.empty_like(maps)
    for start in range(0, size, block):
        stop = min(start + block, size)
        low, high = int(first[start:stop].min()), int(last[start:stop].max()) + 1
        if high <= low:  # rows of zeros (a sigma of zero cannot give them, but be safe)
            (out[..., start:stop, :] if along_rows else out[..., start:stop]).zero_()
            continue
        part = matrix[start:stop, low:high]
        if along_rows:
            out[..., start:stop, :] = part @ maps[..., low:high, :]
        else:
            out[..., start:stop] = maps[..., low:high] @ part.T
    return out
