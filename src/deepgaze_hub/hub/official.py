"""The layout of the DeepGaze family's published weight files (``deepgaze1.pth``, ``deepgaze2e.pth``).

The authors publish DeepGaze I and DeepGaze IIE as plain PyTorch state dicts (no licence, no
checksum; see docs/design.md). Before converting one, check that what was loaded is that file:
`published_layout` gives the expected ``{key: shape}`` of each, `check_layout` compares a loaded
state dict against it and raises `WeightsError` naming the missing, unexpected and misshapen keys.

Layouts, as the authors' modules name their parameters:

- ``deepgaze1`` (19 keys): torchvision ``alexnet`` under ``features.features.1.``, the readout
  ``readout_network.conv0.weight`` (1, 256, 1, 1), ``finalizer.gauss.sigma`` () and
  ``finalizer.center_bias_weight`` (1,).
- ``deepgaze2e`` (5461 keys): four backbones ``models.<b>.features.features.1.<network>`` (b = 0
  ShapeNet-C, a torchvision ``resnet50`` under ``module.``; 1 EfficientNet-B5 in the
  ``efficientnet_pytorch`` layout; 2 torchvision ``densenet201``; 3 torchvision ``resnext50_32x4d``),
  each with 30 readouts k = 0..29: ``models.<b>.saliency_networks.<k>.*``,
  ``models.<b>.fixation_selection_networks.<k>.*``, ``models.<b>.finalizers.<k>.*``.
  Batch-norm layers carry ``num_batches_tracked`` (int64, shape ()).

`random_published_state_dict` makes a state dict in a published layout with random but numerically
sensible values, for tests and dry runs of a converter (the real files cannot be downloaded here).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from ..errors import WeightsError
from ..model.efficientnet import efficientnet_b5

DEEPGAZE1 = "deepgaze1"
DEEPGAZE2E = "deepgaze2e"
KINDS = (DEEPGAZE1, DEEPGAZE2E)

#: Human names of the published files, used in error messages.
FILE_NAMES = {DEEPGAZE1: "deepgaze1.pth (DeepGaze I)", DEEPGAZE2E: "deepgaze2e.pth (DeepGaze IIE)"}

#: Readouts per backbone in DeepGaze IIE (3 training instances x 10 cross-validation folds).
DEEPGAZE2E_MEMBERS = 30

Shape = tuple[int, ...]


def _shapenet_c() -> nn.Module:
    # The authors wrap the ResNet-50 as if in DataParallel, so every key starts with "module.".
    return nn.Sequential(OrderedDict(module=torchvision.models.resnet50(weights=None)))


@dataclass(frozen=True)
class PublishedBackbone:
    """One backbone of a published model.

    ``build()`` returns the randomly initialised network stored under ``...features.features.1.``
    (the authors wrap it as ``Sequential(Normalizer, network)``; the normaliser has no state);
    ``taps`` are module names inside that network whose outputs (cloned right after the module
    runs, i.e. before any in-place activation) are the readout's input, concatenated in this
    order, ``channels`` channels together.
    """

    name: str
    build: Callable[[], nn.Module]
    taps: tuple[str, ...]
    channels: int


#: DeepGaze I's AlexNet. ``features.10`` is torchvision alexnet's fifth convolution; the
#: authors' hook copies its output before the in-place ReLU at ``features.11`` runs.
DEEPGAZE1_BACKBONE = PublishedBackbone("alexnet", lambda: torchvision.models.alexnet(weights=None), ("features.10",), 256)

#: DeepGaze IIE's four backbones, in the order of ``models.<b>``.
DEEPGAZE2E_BACKBONES: tuple[PublishedBackbone, ...] = (
    PublishedBackbone(
        "shapenet_c",
        _shapenet_c,
        (
            "module.layer3.0.conv2",
            "module.layer3.3.conv2",
            "module.layer3.5.conv1",
            "module.layer3.5.conv2",
            "module.layer4.1.conv2",
            "module.layer4.2.conv2",
        ),
        2048,
    ),
    PublishedBackbone(
        "efficientnet_b5",
        efficientnet_b5,
        ("_blocks.24._depthwise_conv", "_blocks.26._depthwise_conv", "_blocks.35._project_conv"),
        2416,
    ),
    PublishedBackbone(
        "densenet201",
        lambda: torchvision.models.densenet201(weights=None),
        (
            "features.denseblock4.denselayer32.norm1",
            "features.denseblock4.denselayer32.conv1",
            "features.denseblock4.denselayer31.conv2",
        ),
        2048,
    ),
    PublishedBackbone(
        "resnext50_32x4d",
        lambda: torchvision.models.resnext50_32x4d(weights=None),
        ("layer3.5.conv1", "layer3.5.conv2", "layer3.4.conv2", "layer4.2.conv2"),
        2560,
    ),
)


@functools.lru_cache(maxsize=None)
def _network_layout(build: Callable[[], nn.Module]) -> tuple[tuple[str, Shape], ...]:
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised for real
        network = build()
    return tuple((key, tuple(value.shape)) for key, value in network.state_dict().items())


def backbone_layout(backbone: PublishedBackbone) -> dict[str, Shape]:
    """``{key: shape}`` of the backbone network's own state dict (keys without any prefix)."""
    return dict(_network_layout(backbone.build))


def saliency_network_layout(channels: int) -> dict[str, Shape]:
    """A DeepGaze IIE member's first readout part: three (layer norm, 1x1 conv, bias) stages,
    ``channels`` -> 8 -> 16 -> 1 (the convolutions have no bias of their own)."""
    layout: dict[str, Shape] = {}
    for i, (cin, cout) in enumerate([(channels, 8), (8, 16), (16, 1)]):
        layout[f"layernorm{i}.weight"] = (cin,)
        layout[f"layernorm{i}.bias"] = (cin,)
        layout[f"conv{i}.weight"] = (cout, cin, 1, 1)
        layout[f"bias{i}.bias"] = (cout,)
    return layout


def fixation_selection_network_layout() -> dict[str, Shape]:
    """A DeepGaze IIE member's second readout part: 1 -> 128 -> 16 -> 1. Its first layer norm and
    convolution are the saliency-map parts of multi-input layers (``*_part0``)."""
    return {
        "layernorm0.layernorm_part0.weight": (1,),
        "layernorm0.layernorm_part0.bias": (1,),
        "conv0.conv_part0.weight": (128, 1, 1, 1),
        "bias0.bias": (128,),
        "layernorm1.weight": (128,),
        "layernorm1.bias": (128,),
        "conv1.weight": (16, 128, 1, 1),
        "bias1.bias": (16,),
        "conv2.weight": (1, 16, 1, 1),
    }


def finalizer_layout() -> dict[str, Shape]:
    """Blur sigma (a 0-d tensor, in pixels of the finalizer's grid) and centre-bias weight (1,)."""
    return {"gauss.sigma": (), "center_bias_weight": (1,)}


def _prefixed(prefix: str, layout: Mapping[str, Shape]) -> dict[str, Shape]:
    return {prefix + key: shape for key, shape in layout.items()}


@functools.lru_cache(maxsize=None)
def _published_layout(kind: str) -> tuple[tuple[str, Shape], ...]:
    layout: dict[str, Shape] = {}
    if kind == DEEPGAZE1:
        layout.update(_prefixed("features.features.1.", backbone_layout(DEEPGAZE1_BACKBONE)))
        layout["readout_network.conv0.weight"] = (1, DEEPGAZE1_BACKBONE.channels, 1, 1)
        layout.update(_prefixed("finalizer.", finalizer_layout()))
    elif kind == DEEPGAZE2E:
        # the authors' module order: features, saliency networks, fixation-selection networks,
        # finalizers (the scanpath networks are None and hold nothing)
        for b, backbone in enumerate(DEEPGAZE2E_BACKBONES):
            model = f"models.{b}."
            layout.update(_prefixed(model + "features.features.1.", backbone_layout(backbone)))
            for k in range(DEEPGAZE2E_MEMBERS):
                layout.update(_prefixed(f"{model}saliency_networks.{k}.", saliency_network_layout(backbone.channels)))
            for k in range(DEEPGAZE2E_MEMBERS):
                layout.update(_prefixed(f"{model}fixation_selection_networks.{k}.", fixation_selection_network_layout()))
            for k in range(DEEPGAZE2E_MEMBERS):
                layout.update(_prefixed(f"{model}finalizers.{k}.", finalizer_layout()))
    else:
        raise WeightsError(f"unknown published DeepGaze weights {kind!r}; use one of {', '.join(KINDS)}")
    return tuple(layout.items())


def published_layout(kind: str) -> dict[str, Shape]:
    """The expected ``{key: shape}`` of a published file, in the authors' key order.

    ``kind`` is ``"deepgaze1"`` (19 keys) or ``"deepgaze2e"`` (5461 keys); anything else raises
    `WeightsError`. The first call per kind builds the backbones on the meta device (no memory,
    a few seconds for DeepGaze IIE); later calls are cached.
    """
    return dict(_published_layout(kind))


def _listing(items: list[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... and {len(items) - limit} more"


def check_layout(state_dict: Mapping[str, object], kind: str, where: str, *, limit: int = 5) -> None:
    """Raise `WeightsError` unless ``state_dict`` has exactly the keys and shapes of ``kind``.

    ``where`` names the file (or source) in the message. The message counts the missing keys, the
    unexpected keys and the keys whose value is not a tensor of the expected shape, lists up to
    ``limit`` of each, and says what to do.
    """
    expected = published_layout(kind)
    what = FILE_NAMES[kind]
    if not isinstance(state_dict, Mapping):
        raise WeightsError(
            f"{where}: expected the state dict of {what} (a mapping of names to tensors), got "
            f"{type(state_dict).__name__}; pass the file the authors publish, loaded with torch.load"
        )
    missing = [key for key in expected if key not in state_dict]
    extra = [str(key) for key in state_dict if key not in expected]
    misshapen = []
    for key, shape in expected.items():
        if key not in state_dict:
            continue
        value = state_dict[key]
        if not isinstance(value, torch.Tensor):
            misshapen.append(f"{key} (expected a tensor of shape {shape}, got {type(value).__name__})")
        elif tuple(value.shape) != shape:
            misshapen.append(f"{key} (expected shape {shape}, got {tuple(value.shape)})")
    if not (missing or extra or misshapen):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing, limit)}")
    if extra:
        problems.append(f"{len(extra)} unexpected key(s): {_listing(extra, limit)}")
    if misshapen:
        problems.append(f"{len(misshapen)} key(s) of the wrong shape: {_listing(misshapen, limit)}")
    raise WeightsError(
        f"{where}: does not have the layout of {what} ({len(expected)} keys): {'; '.join(problems)}. "
        f"Check that this is the unmodified file the authors publish for {kind}"
    )


def _random_value(key: str, shape: Shape, generator: torch.Generator) -> torch.Tensor:
    """A value that keeps random networks finite and readouts well-conditioned."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.int64)
    if leaf == "sigma":  # blur sigma in grid pixels
        return 2.0 + 7.0 * torch.rand(shape, generator=generator)
    if leaf == "center_bias_weight":
        return 0.5 + torch.rand(shape, generator=generator)
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=generator)
    if leaf in ("running_mean", "bias"):
        return 0.1 * torch.randn(shape, generator=generator)
    if len(shape) == 1:  # scale of a batch or layer norm
        return 0.5 + 0.5 * torch.rand(shape, generator=generator)
    fan_in = math.prod(shape[1:])  # convolutions and linear layers: variance 1 / fan_in
    return torch.randn(shape, generator=generator) / math.sqrt(fan_in)


def random_published_state_dict(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict in the published layout of ``kind`` with random float32 values (int64
    ``num_batches_tracked``), the same for the same seed.

    Weights have variance 1/fan-in, norm scales lie in [0.5, 1], biases and running means are small,
    running variances lie in [0.5, 1.5], blur sigmas in [2, 9] grid pixels and centre-bias weights in
    [0.5, 1.5], so that networks built from it give finite outputs. Sizes: ``deepgaze1`` 61.1 M
    values (~245 MB), ``deepgaze2e`` ~105 M values (~420 MB): make it once per test session.
    """
    generator = torch.Generator().manual_seed(seed)
    return {key: _random_value(key, shape, generator) for key, shape in published_layout(kind).items()}
