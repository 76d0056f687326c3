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

The mixture ``log mean_k p_k`` is streamed member by member rather than formed from the
(B, K, G_h, G_w) stack of normalised log densities: per member, ``e_k = exp(z_k - c_k)`` with
``c_k`` an upper bound of z_k (subtracted from the 24 x 32 readout, since the matrices' rows sum
to 1), its mass ``S_k = sum(count * e_k)``, and the running sum ``sum_k e_k / S_k``, which is
``sum_k p_k`` per pixel (`MixtureSum`; the members of several backbones with the same grid add
into one). An e_k that underflows in float32 loses less than ``tiny / S_k``; where the sum is
below ``sum_k tiny / S_k / eps`` (pixels some 70 nats or more below every member's peak) the
log-space mixture is computed instead, so the result equals ``logsumexp_k(log p_k) - log K``
to float rounding everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


class MixtureSum:
    """The running ``sum_k p_k`` of members on one grid, in the streamed form of the module docstring.

    ``total`` (B, G_h * G_w): ``sum_k e_k / S_k``; ``lost`` (B,): ``sum_k 1 / S_k`` (what underflowed
    values of ``e_k`` may have lost, in units of ``tiny``). (G_h, G_w) is the grid of `_Grid`'s index
    maps: the finalizer grid with nearest resizing, else the image.
    """

    def __init__(self, grid: _Grid) -> None:
        self.shape = (grid.bias.shape[0], grid.row_counts.numel(), grid.col_counts.numel())
        self.grid = grid
        self.counts = torch.outer(grid.row_counts, grid.col_counts).reshape(-1)  # pixels per grid cell
        # every cell the same size (even image sides): a member's mass is a plain sum, times that size
        low, high = self.counts.aminmax()
        self.same_count = float(low) if bool(low == high) else None
        self.total = grid.bias.new_zeros(self.shape[0], self.counts.numel())
        self.lost = grid.bias.new_zeros(self.shape[0])

    def add(self, e: torch.Tensor) -> None:
        """Add one member: ``e`` (B, G_h, G_w) = exp of its unnormalised log density (at most 1)."""
        e = e.reshape(e.shape[0], -1)
        mass = torch.mv(e, self.counts) if self.same_count is None else e.sum(dim=1) * self.same_count
        inverse = mass.reciprocal()  # 1 / S_k per image
        self.total.addcmul_(e, inverse.unsqueeze(1))
        self.lost = self.lost + inverse

    def log(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log sum_k p_k, low)``, both (B, G_h, G_w): nats, and where that value is not to be
        trusted because underflow may have lost a relative eps of it (NaN included)."""
        total = self.total.view(self.shape)
        finfo = torch.finfo(total.dtype)
        low = ~(total >= (self.lost * finfo.tiny / finfo.eps).view(-1, 1, 1))
        return total.log(), low


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
        # the last `blur_matrices` built without gradients: (sizes, sigmas, matrices)
        self._last_blur: tuple[tuple, torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None

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
        """Steps 2-3 of the selected members along rows and columns: (K', G_h, h) and (K', G_w, w).

        Without gradients, the matrices of the last call are reused when the sizes and the members'
        sigmas (compared by value) are the same: images of one size in a row build them once.
        """
        sigma = self.sigma[members]
        grid_h, grid_w = grid.bias.shape[-2:]
        sizes = (tuple(readout_size), grid_h, grid_w, self.truncate, self.resize_mode, sigma.device, sigma.dtype)
        reuse = not (torch.is_grad_enabled() and sigma.requires_grad)
        last = self._last_blur
        if reuse and last is not None and last[0] == sizes and torch.equal(last[1], sigma):
            return last[2]
        rows = blurred_resize_matrix(readout_size[0], grid_h, sigma, self.truncate, self.resize_mode)
        cols = blurred_resize_matrix(readout_size[1], grid_w, sigma, self.truncate, self.resize_mode)
        if reuse:
            self._last_blur = (sizes, sigma.detach().clone(), (rows, cols))
            return self._last_blur[2]
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
        member by member (see the module docstring); equal to
        ``grid_log_density(...)[0].logsumexp(dim=1)`` to float rounding.
        """
        grid = self.grid(centerbias)
        return _log_sum([(self, readout, members)], grid, centerbias), grid.rows, grid.cols

    def add_members(self, readout: torch.Tensor, members: torch.Tensor, mixture: MixtureSum) -> None:
        """Add the members ``members`` (K',) with readout output ``readout`` (B, K', h, w) to ``mixture``,
        whose grid must be this finalizer's `grid` for the centre bias (with nearest resizing, any
        finalizer with the same ``saliency_map_factor`` has the same grid)."""
        grid = mixture.grid
        rows, cols = self.blur_matrices(readout.shape[-2:], grid, members)
        readout = readout - self._peak_bound(readout, grid, members)[..., None, None]
        blurred_cols = torch.matmul(readout, cols.transpose(1, 2))  # (B, K', h, G_w)
        weights = self.centerbias_weight[members]
        # without gradients, the centre bias is added by the product itself (one pass less)
        fused = not (torch.is_grad_enabled() and weights.requires_grad)
        for k, weight in enumerate(weights.tolist() if fused else weights):
            left = rows[k].expand(readout.shape[0], -1, -1)
            if fused:
                z = torch.baddbmm(grid.bias, left, blurred_cols[:, k], beta=weight)
            else:
                z = torch.addcmul(torch.bmm(left, blurred_cols[:, k]), weight, grid.bias)
            if grid.full is not None:
                z = resize(z.unsqueeze(1), grid.full, self.resize_mode)[:, 0]
            mixture.add(z.exp_())

    def _peak_bound(self, readout: torch.Tensor, grid: _Grid, members: torch.Tensor) -> torch.Tensor:
        """(B, K') upper bounds of the members' maps (a blurred, resized readout is at most its
        maximum: the matrices' rows are non-negative and sum to 1); subtracting them from the
        readout shifts each map to at most 0, so that exp cannot overflow. Not differentiated:
        the result does not depend on the shift."""
        weight = self.centerbias_weight[members].detach().view(1, -1)
        high = grid.bias.amax(dim=(1, 2)).view(-1, 1)
        low = grid.bias.amin(dim=(1, 2)).view(-1, 1)
        return readout.detach().amax(dim=(2, 3)) + torch.maximum(weight * high, weight * low)


def log_mixture(parts: Sequence[tuple[Finalizer, torch.Tensor, torch.Tensor]], centerbias: torch.Tensor) -> torch.Tensor:
    """``log mean_k p_k`` (B, H, W), nats, over the members of one or more finalizers (backbones).

    ``parts``: ``(finalizer, readout, members)`` with readout (B, K', h, w) the readout output of
    that finalizer's members ``members`` (K',); centerbias (B, H, W). Finalizers with the same
    ``saliency_map_factor`` and resize mode share a grid: their members add into one `MixtureSum`
    there, and only the result is expanded to (H, W). Every member has the same weight.
    """
    groups: dict[tuple[float, str], list[tuple[Finalizer, torch.Tensor, torch.Tensor]]] = {}
    for part in parts:
        groups.setdefault((part[0].saliency_map_factor, part[0].resize_mode), []).append(part)
    total = None
    for group in groups.values():
        first = group[0][0]
        z = first.expand(_log_sum(group, first.grid(centerbias), centerbias), tuple(centerbias.shape[-2:]))
        total = z if total is None else torch.logaddexp(total, z)
    return total - math.log(sum(members.numel() for _, _, members in parts))


def _log_sum(parts: Sequence[tuple[Finalizer, torch.Tensor, torch.Tensor]], grid: _Grid, centerbias: torch.Tensor) -> torch.Tensor:
    """``log sum_k p_k`` (B, G_h, G_w), nats, over the members of ``parts`` (as in `log_mixture`),
    whose finalizers all have ``grid``: streamed (`MixtureSum`), with the log-space mixture where
    underflow may have lost precision; one member alone is its own log density, exactly."""
    if len(parts) == 1 and parts[0][2].numel() == 1:
        finalizer, readout, members = parts[0]
        return finalizer.grid_log_density(readout, centerbias, members)[0][:, 0]
    mixture = MixtureSum(grid)
    for finalizer, readout, members in parts:
        finalizer.add_members(readout, members, mixture)
    log_total, low = mixture.log()
    if bool(low.any()):
        exact = torch.stack([f.grid_log_density(r, centerbias, m)[0].logsumexp(dim=1) for f, r, m in parts])
        log_total = torch.where(low, exact.logsumexp(dim=0), log_total)
    return log_total
