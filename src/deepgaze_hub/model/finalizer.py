"""The finalizer: readout output + centre bias -> normalised log density (docs/design.md, "Forward pass").

For each member k, in the reference's order:

1. the centre-bias log density (B, H, W) is shrunk by ``saliency_map_factor`` to (Hs, Ws);
2. the readout output is resized to (Hs, Ws);
3. it is blurred by a Gaussian of std ``sigma[k]`` (pixels of that grid) with
   ``2 * ceil(truncate * sigma) + 1`` taps, normalised to sum 1, replicate padding at the borders;
4. ``centerbias_weight[k]`` times the shrunk centre bias is added;
5. the result is resized to (H, W) and normalised so that ``exp(out).sum() == 1``.

Steps 2 and 3 are linear and separable along rows and columns, so they are applied together as
two small matrices per member (resize, then blur: ``A = G @ R``): ``A_rows @ r @ A_cols^T``. This is
the same arithmetic as interpolate + padded conv1d, far cheaper on a readout of 24 x 32 values.
With nearest resizing, every pixel of the finalizer grid becomes a block of ``count`` output
pixels in step 5, so the normaliser is computed on the grid with those counts and the mixture
of the members is formed there too; only the final result is expanded to (H, W).

The mixture ``log mean_k p_k`` is streamed over chunks of members rather than formed from the
(B, K, G_h, G_w) stack of normalised log densities: per member, ``e_k = exp(z_k - c_k)`` with
``c_k`` an upper bound of z_k (subtracted from the 24 x 32 readout, since the matrices' rows sum
to 1), its mass ``S_k = sum(count * e_k)``, and the running sum ``sum_k e_k / S_k``, which is
``sum_k p_k`` per pixel. An e_k that underflows in float32 loses less than ``tiny / S_k``; where
the sum is below ``sum_k tiny / S_k / eps`` (pixels some 70 nats or more below every member's
peak) the log-space mixture is computed instead, so the result equals
``logsumexp_k(log p_k) - log K``
to float rounding everywhere.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .resize import nearest_indices, resize, resize_matrix, shrink


def gaussian_taps(sigma: torch.Tensor, truncate: float) -> tuple[torch.Tensor, int]:
    """Normalised Gaussian kernels for a (K,) tensor of sigmas, zero-padded to a common length.

    Returns ``(weights, radius)``: weights (K, 2 * radius + 1); member k has non-zero taps only
    within ``ceil(truncate * sigma[k])`` of the centre, as the reference's kernel size rule gives.
    Zero-padding a kernel does not change a replicate-padded convolution.
    """
    sigma = sigma.abs().clamp_min(1e-3)
    radii = torch.ceil(truncate * sigma.detach()).long()
    radius = int(radii.max().item())
    offsets = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    inside = offsets.abs().unsqueeze(0) <= radii.unsqueeze(1).to(sigma.dtype)
    weights = torch.exp(-0.5 * (offsets.unsqueeze(0) / sigma.unsqueeze(1)) ** 2) * inside
    return weights / weights.sum(dim=1, keepdim=True), radius


def blurred_resize_matrix(
    n_in: int, n_out: int, sigma: torch.Tensor, truncate: float, mode: str
) -> torch.Tensor:
    """(K, n_out, n_in): resize n_in -> n_out along one axis, then Gaussian-blur with replicate padding.

    ``blur[k, i, :] = sum_t taps[k, t] * resized[clamp(i + t - radius), :]``: one 1-d convolution of
    the resize matrix's columns with every member's taps (a strided view, not a copy).
    """
    weights, radius = gaussian_taps(sigma, truncate)
    resized = resize_matrix(n_in, n_out, mode, device=sigma.device, dtype=sigma.dtype)  # (n_out, n_in)
    padded = F.pad(resized.T.unsqueeze(1), (radius, radius), mode="replicate")  # (n_in, 1, n_out + 2r)
    return F.conv1d(padded, weights.unsqueeze(1)).permute(1, 2, 0)  # (n_in, K, n_out) -> (K, n_out, n_in)


#: Members per chunk of the streamed mixture: bounds its memory to (B, chunk, G_h, G_w) floats.
MIXTURE_CHUNK = 8


class _Grid(NamedTuple):
    """Where the members' maps live: the centre bias on the grid and how image pixels read the grid.

    ``bias`` (B, Gh, Gw) centre-bias log density on the grid (not renormalised); ``rows`` (H,) and
    ``cols`` (W,) the grid row/column of each image row/column; ``row_counts`` (Gh,) and
    ``col_counts`` (Gw,) how many image rows/columns read each grid row/column (so grid cell (i, j)
    stands for ``row_counts[i] * col_counts[j]`` pixels). ``full`` (H, W) when the maps are resized
    to the image (antialiased mode), else None.
    """

    bias: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    row_counts: torch.Tensor
    col_counts: torch.Tensor
    full: tuple[int, int] | None


class Finalizer(nn.Module):
    """Blur, centre bias and normalisation for K members with their own sigma and weight.

    Parameters: ``sigma`` (K,) in pixels of the finalizer grid, ``centerbias_weight`` (K,).
    """

    def __init__(
        self,
        num_members: int,
        *,
        initial_sigma: float,
        truncate: float,
        initial_centerbias_weight: float,
        saliency_map_factor: int,
        resize_mode: str,
        learn_sigma: bool = True,
        learn_centerbias_weight: bool = True,
    ) -> None:
        super().__init__()
        self.sigma = nn.Parameter(torch.full((num_members,), float(initial_sigma)), requires_grad=learn_sigma)
        self.centerbias_weight = nn.Parameter(
            torch.full((num_members,), float(initial_centerbias_weight)),
            requires_grad=learn_centerbias_weight,
        )
        self.truncate = float(truncate)
        self.saliency_map_factor = saliency_map_factor
        self.resize_mode = resize_mode

    def forward(
        self, readout: torch.Tensor, centerbias: torch.Tensor, members: torch.Tensor, mixture: bool
    ) -> torch.Tensor:
        """Log densities (nats) from readout output.

        Args:
            readout: (B, K', h, w) readout output of the members ``members`` (K',).
            centerbias: (B, H, W) centre-bias log density at full image resolution.
            mixture: if True return the mixture (B, H, W) = logsumexp_k(log p_k) - log K';
                otherwise every member's log density, (B, K', H, W).
        """
        size = tuple(centerbias.shape[-2:])
        if mixture:
            z, _, _ = self.grid_log_mixture(readout, centerbias, members)
            return self.expand(z - math.log(members.numel()), size)
        return self.expand(self.grid_log_density(readout, centerbias, members)[0], size)

    def expand(self, z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Grid maps (B, G_h, G_w) or (B, K', G_h, G_w) to the image's (H, W) = ``size``: the same as
        indexing with `grid`'s ``rows`` and ``cols`` (nearest resizing picks the same pixels), faster."""
        if self.resize_mode != "nearest" or tuple(z.shape[-2:]) == tuple(size):
            return z  # already at the image's size
        flat = z.unsqueeze(1) if z.ndim == 3 else z
        out = resize(flat, size, "nearest")
        return out[:, 0] if z.ndim == 3 else out

    def grid(self, centerbias: torch.Tensor) -> _Grid:
        """The grid of the members' maps for a (B, H, W) centre bias: the finalizer grid with
        nearest resizing, the image itself (identity indices) otherwise."""
        height, width = centerbias.shape[-2:]
        small_bias = shrink(centerbias.unsqueeze(1), self.saliency_map_factor, self.resize_mode)[:, 0]
        grid_h, grid_w = small_bias.shape[-2:]
        device, dtype = centerbias.device, centerbias.dtype
        if self.resize_mode != "nearest":
            ones_h, ones_w = torch.ones(height, device=device, dtype=dtype), torch.ones(width, device=device, dtype=dtype)
            identity_h, identity_w = torch.arange(height, device=device), torch.arange(width, device=device)
            return _Grid(small_bias, identity_h, identity_w, ones_h, ones_w, (height, width))
        rows = nearest_indices(grid_h, height, device=device)
        cols = nearest_indices(grid_w, width, device=device)
        row_counts = torch.bincount(rows, minlength=grid_h).to(dtype)
        col_counts = torch.bincount(cols, minlength=grid_w).to(dtype)
        return _Grid(small_bias, rows, cols, row_counts, col_counts, None)

    def blur_matrices(
        self, readout_size: tuple[int, int], grid: _Grid, members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 2-3 of the selected members along rows and columns: (K', G_h, h) and (K', G_w, w)."""
        sigma = self.sigma[members]
        grid_h, grid_w = grid.bias.shape[-2:]
        rows = blurred_resize_matrix(readout_size[0], grid_h, sigma, self.truncate, self.resize_mode)
        cols = blurred_resize_matrix(readout_size[1], grid_w, sigma, self.truncate, self.resize_mode)
        return rows, cols

    def member_maps(
        self,
        readout: torch.Tensor,
        grid: _Grid,
        members: torch.Tensor,
        matrices: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Unnormalised log densities (B, K', ...) of the members on ``grid``: steps 2-4 (and the
        resize of step 5 in antialiased mode). ``matrices``: their `blur_matrices`, if at hand."""
        rows, cols = matrices if matrices is not None else self.blur_matrices(readout.shape[-2:], grid, members)
        z = torch.matmul(rows, torch.matmul(readout, cols.transpose(1, 2)))  # (B, K', Gh, Gw)
        z = torch.addcmul(z, self.centerbias_weight[members].view(1, -1, 1, 1), grid.bias.unsqueeze(1))
        return z if grid.full is None else resize(z, grid.full, self.resize_mode)

    def grid_log_density(
        self, readout: torch.Tensor, centerbias: torch.Tensor, members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised member log densities on a grid, and where each image pixel reads it.

        Returns ``(z, rows, cols)``: z (B, K', G_h, G_w), rows (H,) and cols (W,) such that the
        log density of member k at pixel (y, x) is ``z[:, k, rows[y], cols[x]]``. With nearest
        resizing the grid is the finalizer grid (nothing is expanded to full resolution);
        otherwise it is the full image and the indices are the identity.
        """
        grid = self.grid(centerbias)
        z = self.member_maps(readout, grid, members)
        log_counts = grid.row_counts.log().unsqueeze(1) + grid.col_counts.log().unsqueeze(0)
        return z - (z + log_counts).logsumexp(dim=(2, 3), keepdim=True), grid.rows, grid.cols

    def grid_log_mixture(
        self, readout: torch.Tensor, centerbias: torch.Tensor, members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``log sum_k p_k`` (nats, not divided by K') of the selected members on the grid.

        Returns ``(s, rows, cols)`` laid out as in `grid_log_density`: s (B, G_h, G_w). Streamed
        over chunks of `MIXTURE_CHUNK` members (see the module docstring); equal to
        ``grid_log_density(...)[0].logsumexp(dim=1)`` to float rounding.
        """
        if members.numel() == 1:  # one member: its own log density, exactly
            z, rows, cols = self.grid_log_density(readout, centerbias, members)
            return z[:, 0], rows, cols
        grid = self.grid(centerbias)
        rows, cols = self.blur_matrices(readout.shape[-2:], grid, members)
        readout = readout - self._peak_bound(readout, grid, members)[..., None, None]
        total, lost = None, None
        for start in range(0, members.numel(), MIXTURE_CHUNK):
            chunk = slice(start, start + MIXTURE_CHUNK)
            e = self.member_maps(readout[:, chunk], grid, members[chunk], (rows[chunk], cols[chunk])).exp_()
            mass = torch.matmul(torch.matmul(e, grid.col_counts), grid.row_counts)  # (B, c): sum(count * e)
            inverse = mass.reciprocal()
            part = torch.matmul(inverse.unsqueeze(1), e.flatten(2)).view(e.shape[0], *e.shape[2:])
            total = part if total is None else total + part
            lost = inverse.sum(dim=1) if lost is None else lost + inverse.sum(dim=1)
        # an underflowed e_k loses less than tiny / mass_k: trust the sum where that is below eps of it
        finfo = torch.finfo(total.dtype)
        low = ~(total >= (lost * finfo.tiny / finfo.eps).view(-1, 1, 1))  # NaN included
        log_total = total.log()
        if bool(low.any()):
            exact = self.grid_log_density(readout, centerbias, members)[0].logsumexp(dim=1)
            log_total = torch.where(low, exact, log_total)
        return log_total, grid.rows, grid.cols

    def _peak_bound(self, readout: torch.Tensor, grid: _Grid, members: torch.Tensor) -> torch.Tensor:
        """(B, K') upper bounds of the members' maps (a blurred, resized readout is at most its
        maximum: the matrices' rows are non-negative and sum to 1); subtracting them from the
        readout shifts each map to at most 0, so that exp cannot overflow. Not differentiated:
        the result does not depend on the shift."""
        weight = self.centerbias_weight[members].detach().view(1, -1)
        high = grid.bias.amax(dim=(1, 2)).view(-1, 1)
        low = grid.bias.amin(dim=(1, 2)).view(-1, 1)
        return readout.detach().amax(dim=(2, 3)) + torch.maximum(weight * high, weight * low)
