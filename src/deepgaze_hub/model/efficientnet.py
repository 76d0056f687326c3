"""EfficientNet-B5 in the parameter layout of the ``efficientnet_pytorch`` package, padded statically.

DeepGaze IIE's second backbone is an EfficientNet-B5 whose weights are stored under the names the
``efficientnet_pytorch`` package uses (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...,
``_conv_head``, ``_bn1``, ``_fc``). This module builds that network without the package, with the
same ``state_dict()`` keys and shapes, so published weights load with ``load_state_dict``.

Padding: every convolution uses TensorFlow-style "same" padding computed ONCE, for a square input of
``padding_size`` pixels (456 for B5) at EVERY layer, whatever the real input size and whatever the
layer's depth: for a k x k convolution with stride s,
``pad = max((ceil(padding_size / s) - 1) * s + k - padding_size, 0)``, ``pad // 2`` zeros before
(top, left) and the rest after (bottom, right). This is what the version of the package the DeepGaze
IIE weights were made with does (see docs/design.md); later versions of the package compute the
padding from each layer's own resolution and timm pads dynamically, which changes the features
whenever a strided layer sees an odd size.

The network is an inference network: batch norms (eps 1e-3, momentum 0.01) use their running
statistics in eval mode, and there is no drop-connect (stochastic depth), which only acts in
training. Activations are swish, ``x * sigmoid(x)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class StageArgs:
    """One stage of mobile inverted bottleneck blocks, before width/depth scaling.

    ``repeats`` blocks; the first has stride ``stride`` and ``in_channels`` inputs, the others stride
    1 and ``out_channels`` inputs. ``expand_ratio`` multiplies the block's input channels for the
    depthwise convolution; the squeeze-excitation bottleneck has ``int(block_in * se_ratio)``
    channels (at least 1).
    """

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    in_channels: int
    out_channels: int
    se_ratio: float = 0.25


#: The seven stages of EfficientNet-B0, scaled by every other member of the family
#: (r1_k3_s11_e1_i32_o16_se0.25 ... r1_k3_s11_e6_i192_o320_se0.25).
BASE_STAGES: tuple[StageArgs, ...] = (
    StageArgs(1, 3, 1, 1, 32, 16),
    StageArgs(2, 3, 2, 6, 16, 24),
    StageArgs(2, 5, 2, 6, 24, 40),
    StageArgs(3, 3, 2, 6, 40, 80),
    StageArgs(3, 5, 1, 6, 80, 112),
    StageArgs(4, 5, 2, 6, 112, 192),
    StageArgs(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class EfficientNetParams:
    """Compound scaling of one family member.

    ``width`` scales channel counts (rounded to multiples of ``depth_divisor``), ``depth`` scales
    repeats (rounded up), ``resolution`` is the training input size in pixels (and the size every
    convolution's static padding is computed for), ``dropout`` the rate before the classifier.
    """

    width: float
    depth: float
    resolution: int
    dropout: float
    depth_divisor: int = 8
    num_classes: int = 1000
    bn_eps: float = 1e-3
    bn_momentum: float = 0.01
    stem_channels: int = 32
    head_channels: int = 1280


B5 = EfficientNetParams(width=1.6, depth=2.2, resolution=456, dropout=0.4)


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width``, rounded to the nearest multiple of ``divisor`` (at least
    ``divisor``), going up one multiple when rounding lost more than 10%."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """Repeats scaled by ``depth``, rounded up."""
    return int(math.ceil(depth * repeats))


def static_same_padding(kernel_size: int, stride: int, size: int) -> tuple[int, int]:
    """(before, after) zero padding in pixels of a "same" convolution for an input of ``size`` pixels."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


class StaticSameConv2d(nn.Conv2d):
    """A square convolution that first zero-pads by ``static_same_padding(k, stride, padding_size)``.

    Parameters are those of ``nn.Conv2d`` (``weight`` (out, in/groups, k, k), optional ``bias``);
    the padding is fixed at construction and is not part of the state dict. (B, in, H, W) ->
    (B, out, H', W') with ``H' = (H + pad_before + pad_after - k) // stride + 1``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        padding_size: int,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=bias)
        before, after = static_same_padding(kernel_size, stride, padding_size)
        self.static_pad = (before, after, before, after)  # F.pad order: left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.static_pad):
            x = F.pad(x, self.static_pad)
        return self._conv_forward(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", static_pad={self.static_pad}"


def swish(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)``, element-wise."""
    return x * torch.sigmoid(x)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck with squeeze-excitation (the package's attribute names).

    expand 1x1 (if ``expand_ratio != 1``) -> BN -> swish -> depthwise k x k (stride) -> BN -> swish
    -> squeeze-excitation (global mean -> 1x1 -> swish -> 1x1 -> sigmoid gate) -> project 1x1 -> BN,
    plus the input when stride is 1 and the channel count is unchanged (no activation after).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        se_ratio: float,
        params: EfficientNetParams,
    ) -> None:
        super().__init__()
        size = params.resolution
        expanded = in_channels * expand_ratio
        squeezed = max(1, int(in_channels * se_ratio))
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.expand_ratio = expand_ratio

        def bn(channels: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(channels, eps=params.bn_eps, momentum=params.bn_momentum)

        if expand_ratio != 1:
            self._expand_conv = StaticSameConv2d(in_channels, expanded, 1, padding_size=size)
            self._bn0 = bn(expanded)
        self._depthwise_conv = StaticSameConv2d(
            expanded, expanded, kernel_size, stride=stride, groups=expanded, padding_size=size
        )
        self._bn1 = bn(expanded)
        self._se_reduce = StaticSameConv2d(expanded, squeezed, 1, bias=True, padding_size=size)
        self._se_expand = StaticSameConv2d(squeezed, expanded, 1, bias=True, padding_size=size)
        self._project_conv = StaticSameConv2d(expanded, out_channels, 1, padding_size=size)
        self._bn2 = bn(out_channels)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand_ratio != 1:
            x = swish(self._bn0(self._expand_conv(x)))
        x = swish(self._bn1(self._depthwise_conv(x)))
        gate = self._se_expand(swish(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))
        x = torch.sigmoid(gate) * x
        x = self._bn2(self._project_conv(x))
        if self.stride == 1 and self.in_channels == self.out_channels:
            x = x + inputs
        return x


class EfficientNet(nn.Module):
    """An EfficientNet classifier, (B, 3, H, W) normalised images -> (B, num_classes) logits.

    ``extract_features`` gives the head's output (B, head channels, ~H/32, ~W/32); forward hooks on
    submodules (e.g. ``_blocks.24._depthwise_conv``, which is the convolution's output BEFORE its
    batch norm) give intermediate maps.
    """

    def __init__(self, params: EfficientNetParams = B5, stages: tuple[StageArgs, ...] = BASE_STAGES) -> None:
        super().__init__()
        self.params = params
        width, divisor, size = params.width, params.depth_divisor, params.resolution
        stem = round_filters(params.stem_channels, width, divisor)
        self._conv_stem = StaticSameConv2d(3, stem, 3, stride=2, padding_size=size)
        self._bn0 = nn.BatchNorm2d(stem, eps=params.bn_eps, momentum=params.bn_momentum)
        blocks = []
        channels = stem
        for stage in stages:
            out_channels = round_filters(stage.out_channels, width, divisor)
            for i in range(round_repeats(stage.repeats, params.depth)):
                blocks.append(
                    MBConvBlock(
                        channels,
                        out_channels,
                        stage.kernel_size,
                        stage.stride if i == 0 else 1,
                        stage.expand_ratio,
                        stage.se_ratio,
                        params,
                    )
                )
                channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        head = round_filters(params.head_channels, width, divisor)
        self._conv_head = StaticSameConv2d(channels, head, 1, padding_size=size)
        self._bn1 = nn.BatchNorm2d(head, eps=params.bn_eps, momentum=params.bn_momentum)
        self._dropout = nn.Dropout(params.dropout)
        self._fc = nn.Linear(head, params.num_classes)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, head channels, h, w): stem, blocks, head (each with BN and swish)."""
        x = swish(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return swish(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.extract_features(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self._fc(self._dropout(x))


def efficientnet_b5(num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-B5 (39 blocks, 2048 head channels), padded statically for 456 x 456 inputs.

    Randomly initialised (PyTorch's default initialisation); load weights with ``load_state_dict``.
    """
    return EfficientNet(replace(B5, num_classes=num_classes))
