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

from functools import lru_cache

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
    device = torch.device(device) if device is not None else torch.device("cpu")
    return _matrix(int(size), float(sigma), mode, float(truncate), dtype, str(device)).clone()


@lru_cache(maxsize=8)
def _matrix(size: int, sigma: float, mode: str, truncate: float, dtype: torch.dtype, device: str) -> torch.Tensor:
    """`gaussian_matrix`, kept: evaluations blur many maps of a few sizes (never modify the result)."""
    device = torch.device(device)
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


def impulse_responses(
    size: int, sigma: float, mode: str, sources: torch.Tensor, *, truncate: float = 4.0, dtype=torch.float64
) -> torch.Tensor:
    """Columns ``sources`` of `gaussian_matrix`: the blur of a unit impulse at each source index.

    ``sources``: integer tensor of any shape ``S`` (indices in [0, size)); returns ``(size, *S)`` on
    its device. A sum of blurred impulses is the blur of their count map (the blur is linear).
    """
    gaussian_matrix(1, sigma, mode)  # checks the arguments
    matrix = _matrix(int(size), float(sigma), mode, float(truncate), dtype, str(sources.device))
    return matrix.index_select(1, sources.reshape(-1)).view(matrix.shape[0], *sources.shape)  # (faster than [:, sources])


def gaussian_blur(maps: torch.Tensor, sigma: float, mode: str = "reflect", *, truncate: float = 4.0) -> torch.Tensor:
    """Blur (..., H, W) maps by a Gaussian of std ``sigma`` pixels, like ``gaussian_filter`` per map."""
    return upsampled_gaussian_blur(maps, 1, sigma, mode, truncate=truncate)


def upsampled_gaussian_blur(
    grid: torch.Tensor, factor: int, sigma: float, mode: str = "reflect", *, truncate: float = 4.0
) -> torch.Tensor:
    """`gaussian_blur` of (..., h, w) maps nearest-upsampled by ``factor``, computed on the grid.

    The upsampled maps, (..., factor * h, factor * w), repeat each grid value on a factor x factor
    block; the blur of a repeated value is the sum of the ``factor`` matrix columns it fills, so the
    blur is done with (L, L / factor) matrices of summed columns, banded like the full ones, and about
    ``factor`` times fewer products. Equal to blurring the upsampled maps to ~1e-15 relative.
    """
    height, width = grid.shape[-2:]
    block = max(MIN_BLOCK, int(truncate * sigma + 0.5))
    key = (float(sigma), mode, float(truncate), block, grid.dtype, str(grid.device), int(factor))
    rows = _blocks(height * factor, *key)
    cols = _blocks(width * factor, *key)
    return _apply_blocks(_apply_blocks(grid, cols, along_rows=False), rows, along_rows=True)


#: Smallest block of outputs computed by one matrix product in `banded_product` (on a 2-core EPYC,
#: 48 blurred 240 x 320 maps with sigma 7.5 px about 17% faster than 64; wider kernels use their radius).
MIN_BLOCK = 48


def banded_product(maps: torch.Tensor, matrix: torch.Tensor, block: int, *, along_rows: bool) -> torch.Tensor:
    """``matrix @ maps`` (``along_rows``) or ``maps @ matrix.T``, a block of ``block`` outputs at a
    time from only the inputs the block's rows of ``matrix`` reach (its nonzero column span)."""
    return _apply_blocks(maps, band_blocks(matrix, block), along_rows=along_rows)


#: One block of a banded matrix: ``(start, stop, low, high, matrix[start:stop, low:high])``.
Block = tuple[int, int, int, int, torch.Tensor]


def band_blocks(matrix: torch.Tensor, block: int) -> list[Block]:
    """The (L, K) ``matrix`` cut into blocks of ``block`` output rows, each with the input span it reaches."""
    size, inputs = matrix.shape
    nonzero = matrix != 0
    positions = torch.arange(inputs, device=matrix.device)
    first = torch.where(nonzero, positions, inputs).amin(1)
    last = torch.where(nonzero, positions, -1).amax(1)
    blocks = []
    for start in range(0, size, block):
        stop = min(start + block, size)
        low, high = int(first[start:stop].min()), int(last[start:stop].max()) + 1
        high = max(high, low)  # rows of zeros (a sigma of zero cannot give them, but be safe)
        blocks.append((start, stop, low, high, matrix[start:stop, low:high].contiguous()))
    return blocks


@lru_cache(maxsize=16)
def _blocks(
    size: int, sigma: float, mode: str, truncate: float, block: int, dtype: torch.dtype, device: str, factor: int = 1
) -> list[Block]:
    """`band_blocks` of `gaussian_matrix` with each ``factor`` adjacent columns summed, kept: evaluations
    blur many maps of a few sizes."""
    gaussian_matrix(size, sigma, mode)  # checks the arguments
    matrix = _matrix(size, sigma, mode, truncate, dtype, device)
    if factor > 1:
        matrix = matrix.view(size, size // factor, factor).sum(2)
    return band_blocks(matrix, block)


def _apply_blocks(maps: torch.Tensor, blocks: list[Block], *, along_rows: bool) -> torch.Tensor:
    size = blocks[-1][1] if blocks else 0  # outputs (rows of the matrix)
    out = maps.new_empty(*maps.shape[:-2], size, maps.shape[-1]) if along_rows else maps.new_empty(*maps.shape[:-1], size)
    flat = maps.reshape(-1, maps.shape[-1])  # (N * H, W): one product per block along the columns
    for start, stop, low, high, part in blocks:
        if high == low:
            (out[..., start:stop, :] if along_rows else out[..., start:stop]).zero_()
        elif along_rows:
            out[..., start:stop, :] = part @ maps[..., low:high, :]
        else:
            out[..., start:stop] = (flat[:, low:high] @ part.T).view(*maps.shape[:-1], stop - start)
    return out
