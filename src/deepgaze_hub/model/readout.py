"""The readout network: K independent stacks of 1x1 convolutions, evaluated as one.

Member k maps the concatenated backbone features (B, C, h, w) through 1x1 convolutions with
``channels`` outputs (reference: 16, 32, 2, 1), a nonlinearity after all but the last. The last
layer has no bias: a constant added to the readout is removed by the final normalisation, so such
a bias would have no effect on the density and only drift during training. The K
members share their input, so the first layer of all members is one matrix product and the later
layers are batched matrix products; this equals running the K readouts one after another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_NONLINEARITIES = {"relu": F.relu, "softplus": F.softplus}


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

    def bias_for(self, members: torch.Tensor) -> torch.Tensor | float:
        """(K', out, 1) biases of the selected members, ready to add to (B, K', out, hw)."""
        return self.bias[members].unsqueeze(-1) if self.bias is not None else 0.0


class EnsembleReadout(nn.Module):
    """K readout networks over shared features.

    ``forward(features, members)``: features (B, C, h, w), members a (K',) index tensor; returns
    (B, K', h, w), the readout output of each selected member.
    """

    def __init__(
        self, in_channels: int, channels: Sequence[int], num_members: int, nonlinearity: str
    ) -> None:
        super().__init__()
        sizes = [in_channels, *channels]
        pairs = list(zip(sizes[:-1], sizes[1:]))
        self.layers = nn.ModuleList(
            MemberwiseConv1x1(num_members, c_in, c_out, bias=i < len(pairs) - 1) for i, (c_in, c_out) in enumerate(pairs)
        )
        self.nonlinearity = nonlinearity
        self.num_members = num_members

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for layer in self.layers:
            layer.reset_parameters(generator)

    def forward(self, features: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        act = _NONLINEARITIES[self.nonlinearity]
        first = self.layers[0]
        k = members.numel()
        weight = first.weight[members]  # (K', out, C): all members' first layers as one matrix
        x = features.reshape(batch, channels, height * width).to(weight.dtype)
        x = torch.matmul(weight.reshape(-1, channels), x).view(batch, k, -1, height * width)
        x = x + first.bias_for(members)  # (B, K', out, hw)
        for layer in self.layers[1:]:
            x = act(x)
            x = torch.matmul(layer.weight[members], x) + layer.bias_for(members)
        return x.reshape(batch, k, height, width)
