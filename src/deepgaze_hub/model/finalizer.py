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
"""

from __future__ import annotations

import math

import torch
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
    """(K, n_out, n_in): resize n_in -> n_out along one axis, then Gaussian-blur with replicate padding."""
    weights, radius = gaussian_taps(sigma, truncate)
    resized = resize_matrix(n_in, n_out, mode, device=sigma.device, dtype=sigma.dtype)  # (n_out, n_in)
    offsets = torch.arange(-radius, radius + 1, device=sigma.device)
    rows = (torch.arange(n_out, device=sigma.device).unsqueeze(1) + offsets).clamp(0, n_out - 1)
    # blur[i, :] = sum_t weights[t] * resized[clamp(i + t), :]
    return torch.einsum("kt,itj->kij", weights, resized[rows])


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
        """Log densities from readout output.

        Args:
            readout: (B, K', h, w) readout output of the members ``members`` (K',).
            centerbias: (B, H, W) centre-bias log density at full image resolution.
            mixture: if True return the mixture (B, H, W) = logsumexp_k(log p_k) - log K';
                otherwise every member's log density, (B, K', H, W).
        """
        z, row_index, col_index = self.grid_log_density(readout, centerbias, members)
        if mixture:
            z = z.logsumexp(dim=1) - math.log(z.shape[1]) if z.shape[1] > 1 else z[:, 0]
        return z[..., row_index, :][..., col_index]

    def grid_log_density(
        self, readout: torch.Tensor, centerbias: torch.Tensor, members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised member log densities on a grid, and where each image pixel reads it.

        Returns ``(z, rows, cols)``: z (B, K', G_h, G_w), rows (H,) and cols (W,) such that the
        log density of member k at pixel (y, x) is ``z[:, k, rows[y], cols[x]]``. With nearest
        resizing the grid is the finalizer grid (nothing is expanded to full resolution);
        otherwise it is the full image and the indices are the identity.
        """
        mode = self.resize_mode
        height, width = centerbias.shape[-2:]
        small_bias = shrink(centerbias.unsqueeze(1), self.saliency_map_factor, mode)[:, 0]
        grid_h, grid_w = small_bias.shape[-2:]
        sigma = self.sigma[members]
        rows = blurred_resize_matrix(readout.shape[-2], grid_h, sigma, self.truncate, mode)
        cols = blurred_resize_matrix(readout.shape[-1], grid_w, sigma, self.truncate, mode)
        z = torch.matmul(rows, torch.matmul(readout, cols.transpose(1, 2)))  # (B, K', Hs, Ws)
        z = z + self.centerbias_weight[members].view(1, -1, 1, 1) * small_bias.unsqueeze(1)

        if mode != "nearest":
            full = resize(z, (height, width), mode)
            identity_rows = torch.arange(height, device=z.device)
            identity_cols = torch.arange(width, device=z.device)
            return full - full.logsumexp(dim=(2, 3), keepdim=True), identity_rows, identity_cols

        row_index = nearest_indices(grid_h, height, device=z.device)
        col_index = nearest_indices(grid_w, width, device=z.device)
        log_counts = (
            torch.bincount(row_index, minlength=grid_h).to(z.dtype).log().unsqueeze(1)
            + torch.bincount(col_index, minlength=grid_w).to(z.dtype).log().unsqueeze(0)
        )
        return z - (z + log_counts).logsumexp(dim=(2, 3), keepdim=True), row_index, col_index
