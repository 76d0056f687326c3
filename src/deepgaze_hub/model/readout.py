"""The readout network: K independent stacks of 1x1 convolutions, evaluated as one.

Member k maps the concatenated backbone features (B, C, h, w) through 1x1 convolutions with
``channels`` outputs (reference: 16, 32, 2, 1), a nonlinearity after all but the last. The last
layer has no bias: a constant added to the readout is removed by the final normalisation, so such
a bias would have no effect on the density and only drift during training. The K
members share their input, so the first layer of all members is one matrix product and the later
layers are batched matrix products; this equals running the K readouts one after another.

With ``layer_norm=True`` (DeepGaze IIE) every convolution but the last is preceded by a layer
norm over channels and positions jointly (``GroupNorm(1, C, eps=1e-12)``: per image, mean and
variance over (C, h, w), then a per-channel scale and shift of the member). Every norm's scale
and shift are folded into the convolution that follows it
(``W_k (g_k * x_hat + b_k) = (W_k g_k) x_hat + W_k b_k``), so only the normalisation itself touches
the activations. The first norm's normalisation does not depend on the member: it is computed once,
keeping the first layer one matrix product for all members; later norms are batched over members.
A layer with one input channel (IIE's 1 -> 128) is an outer product, formed in one fused step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_NONLINEARITIES = {"relu": F.relu, "softplus": F.softplus}
#: Epsilon of the readout's layer norms (DeepGaze IIE's).
LAYER_NORM_EPS = 1e-12


class MemberwiseConv1x1(nn.Module):
    """K independent 1x1 convolutions: ``weight`` (K, out, in), ``bias`` (K, out) or None."""

    def __init__(self, num_members: int, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_members, out_channels, in_channels))
        self.bias = nn.Parameter(torch.empty(num_members, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        # Same distribution as nn.Conv2d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = 1 / math.sqrt(self.weight.shape[-1])
        with torch.no_grad():
            self.weight.uniform_(-bound, bound, generator=generator)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound, generator=generator)


class MemberwiseAffine(nn.Module):
    """K per-channel scales ``weight`` (K, C) (initially 1) and shifts ``bias`` (K, C) (initially 0)."""

    def __init__(self, num_members: int, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_members, channels))
        self.bias = nn.Parameter(torch.zeros(num_members, channels))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            self.weight.fill_(1.0)
            self.bias.zero_()


class EnsembleReadout(nn.Module):
    """K readout networks over shared features.

    ``forward(features, members)``: features (B, C, h, w), members a (K',) index tensor; returns
    (B, K', h, w), the readout output of each selected member.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        num_members: int,
        nonlinearity: str,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        sizes = [in_channels, *channels]
        pairs = list(zip(sizes[:-1], sizes[1:]))
        self.layers = nn.ModuleList(
            MemberwiseConv1x1(num_members, c_in, c_out, bias=i < len(pairs) - 1) for i, (c_in, c_out) in enumerate(pairs)
        )
        # norms[i] comes before layers[i]; the last layer has none
        self.norms = nn.ModuleList(MemberwiseAffine(num_members, c_in) for c_in, _ in pairs[:-1]) if layer_norm else None
        self.nonlinearity = nonlinearity
        self.num_members = num_members

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for layer in self.layers:
            layer.reset_parameters(generator)
        for norm in self.norms or ():
            norm.reset_parameters(generator)

    def forward(self, features: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        act = _NONLINEARITIES[self.nonlinearity]
        k = members.numel()
        x = features.reshape(batch, 1, channels, height * width).to(self.layers[0].weight.dtype)  # shared
        for i, layer in enumerate(self.layers):
            # indexed copies even when every member is used: the products then see the same freshly
            # allocated operands whichever model the members come from (BLAS rounding can depend on
            # the operands' memory alignment), so a sub-ensemble equals the selection bit for bit
            weight = layer.weight[members]  # (K', out, in)
            shift = layer.bias[members].unsqueeze(-1) if layer.bias is not None else 0.0  # (K', out, 1)
            if self.norms is not None and i < len(self.norms):
                # per image (and member) over channels and positions; group_norm's kernel is faster
                # than layer_norm's on these shapes (it splits the work of one sample across threads)
                x = F.group_norm(x.reshape(-1, *x.shape[-2:]), 1, eps=LAYER_NORM_EPS).view(x.shape)
                norm = self.norms[i]
                shift = shift + torch.matmul(weight, norm.bias[members].unsqueeze(-1))  # W_k b_k
                weight = weight * norm.weight[members].unsqueeze(1)  # W_k diag(g_k)
            x = _memberwise_conv(weight, x, shift)  # (B, K', out, hw)
            if i < len(self.layers) - 1:
                x = act(x)
        return x.reshape(batch, k, height, width)


def _memberwise_conv(weight: torch.Tensor, x: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
    """``weight_k @ x_k + shift_k`` for weight (K', out, in), x (B, K', in, hw) or (B, 1, in, hw)
    (one input shared by all members: one matrix product), shift (K', out, 1) or 0; (B, K', out, hw)."""
    members, out_channels, in_channels = weight.shape
    if x.shape[1] == 1 and members > 1:
        x = torch.matmul(weight.reshape(members * out_channels, in_channels), x[:, 0])
        x = x.view(x.shape[0], members, out_channels, -1)
    elif in_channels == 1 and isinstance(shift, torch.Tensor):  # an outer product: one fused pass
        return torch.addcmul(shift, weight, x)
    else:
        x = torch.matmul(weight, x)
    return x + shift if isinstance(shift, torch.Tensor) else x
