"""The resizing operations of the forward pass, in the reference's exact form or antialiased.

``"nearest"`` calls `torch.nn.functional.interpolate` exactly as the reference implementation
does (``scale_factor`` with ``recompute_scale_factor=False`` for the fixed-factor shrinks, ``size``
for the others), so the same pixels are picked. ``"antialias"`` uses antialiased bilinear
resizing instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def shrink(x: torch.Tensor, factor: float, mode: str) -> torch.Tensor:
    """Shrink (B, C, H, W) by ``factor`` to (floor(H / factor), floor(W / factor))."""
    if mode == "nearest":
        return F.interpolate(x, scale_factor=1 / factor, recompute_scale_factor=False)
    return F.interpolate(
        x, scale_factor=1 / factor, recompute_scale_factor=False, mode="bilinear", antialias=True
    )


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize (B, C, H, W) to ``size`` = (rows, cols)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size)
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def resize_matrix(n_in: int, n_out: int, mode: str, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The (n_out, n_in) matrix M with ``resize(x)`` along one axis equal to ``M @ x``.

    Built by resizing an identity with the same call as `resize`, so it reproduces PyTorch's
    index arithmetic (including its float rounding) exactly. Both resize modes are separable.
    """
    eye = torch.eye(n_in, device=device, dtype=dtype).view(1, n_in, n_in, 1)
    return resize(eye, (n_out, 1), mode)[0, :, :, 0].T.contiguous()


def nearest_indices(n_in: int, n_out: int, *, device=None) -> torch.Tensor:
    """Source index of each output position of a nearest resize from n_in to n_out, shape (n_out,)."""
    source = torch.arange(n_in, device=device, dtype=torch.float32).view(1, 1, n_in, 1)
    return resize(source, (n_out, 1), "nearest")[0, 0, :, 0].long()
