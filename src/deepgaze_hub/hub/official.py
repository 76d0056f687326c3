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

import numpy as np
import torch
import torchvision
from torch import nn

from ..errors import WeightsError
from ..model.config import (
    EFFICIENTNET_B5_STATIC,
    MAX_CENTERBIAS_SIDE,
    STORED_WEIGHTS,
    BackboneConfig,
    DeepGazeConfig,
    PathwayConfig,
)
from ..model.deepgaze import DeepGaze
from ..model.efficientnet import efficientnet_b5
from ..model.files import compare_layout

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
    mismatch = compare_layout(state_dict, expected)
    if not mismatch:
        return
    missing, extra = mismatch.missing, mismatch.unexpected
    misshapen = [
        f"{key} (expected shape {shape}, got {tuple(value.shape)})"
        if isinstance(value, torch.Tensor)
        else f"{key} (expected a tensor of shape {shape}, got {type(value).__name__})"
        for key, value, shape in mismatch.misshapen
    ]
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


# -- conversion ------------------------------------------------------------------------------------
#: Name of our EfficientNet-B5 backbone and the published backbones' names in our configs; the
#: authors' ShapeNet-C is a torchvision ``resnet50`` whose keys carry a ``module.`` prefix.
_OUR_BACKBONE_NAMES = {"shapenet_c": "resnet50", "efficientnet_b5": EFFICIENTNET_B5_STATIC}
_SHAPENET_PREFIX = "module."
#: Side of the default centre-bias template of converted models (the authors' template's size).
OFFICIAL_TEMPLATE_SIDE = 1024
#: DeepGaze IIE's readout: 1x1 convolutions C -> 8 -> 16 -> 1 (saliency network) -> 128 -> 16 -> 1
#: (fixation-selection network), a layer norm before and a bias and softplus after all but the last.
DEEPGAZE2E_READOUT_CHANNELS = (8, 16, 1, 128, 16, 1)


#: Channels of each tap of the published backbones, in tap order (the sums are
#: `PublishedBackbone.channels`; a wrong entry makes the converter fail on the readout shapes).
TAP_CHANNELS = {
    "alexnet": (256,),
    "shapenet_c": (256, 256, 256, 256, 512, 512),
    "efficientnet_b5": (1056, 1056, 304),
    "densenet201": (1888, 128, 32),
    "resnext50_32x4d": (512, 512, 512, 1024),
}


def _our_layers(backbone: PublishedBackbone) -> list[str]:
    return [tap.removeprefix(_SHAPENET_PREFIX) if backbone.name == "shapenet_c" else tap for tap in backbone.taps]


def _pathway(backbone: PublishedBackbone, members: int, **fields: object) -> PathwayConfig:
    channels = list(TAP_CHANNELS[backbone.name])
    config = BackboneConfig(
        name=_OUR_BACKBONE_NAMES.get(backbone.name, backbone.name),
        weights=STORED_WEIGHTS,
        layers=_our_layers(backbone),
        channels=channels,
    )
    return PathwayConfig(backbone=config, num_members=members, nonlinearity="softplus", **fields)


def official_config(kind: str, centerbias_shape: tuple[int, int] = (OFFICIAL_TEMPLATE_SIDE,) * 2) -> DeepGazeConfig:
    """The `DeepGazeConfig` of a converted published model (backbone weights stored with the model,
    the centre-bias template resized as the authors do)."""
    if kind == DEEPGAZE1:
        pathways = [_pathway(DEEPGAZE1_BACKBONE, 1, readout_factor=4, saliency_map_factor=4, readout_channels=[1])]
    elif kind == DEEPGAZE2E:
        pathways = [
            _pathway(b, DEEPGAZE2E_MEMBERS, readout_channels=list(DEEPGAZE2E_READOUT_CHANNELS), readout_layer_norm=True)
            for b in DEEPGAZE2E_BACKBONES
        ]
    else:
        raise WeightsError(f"unknown published DeepGaze weights {kind!r}; use one of {', '.join(KINDS)}")
    base = DeepGazeConfig(centerbias_shape=list(centerbias_shape), centerbias_resize="zoom_nearest")
    return base.with_pathways(pathways)


def _deepgaze2e_member_keys(b: int, k: int) -> dict[str, str]:
    """Our readout/finalizer parameter name (within a pathway) -> the authors' key, member k of backbone b."""
    s, f = f"models.{b}.saliency_networks.{k}.", f"models.{b}.fixation_selection_networks.{k}."
    keys = {}
    for i in range(3):
        keys[f"readout.norms.{i}.weight"] = f"{s}layernorm{i}.weight"
        keys[f"readout.norms.{i}.bias"] = f"{s}layernorm{i}.bias"
        keys[f"readout.layers.{i}.weight"] = f"{s}conv{i}.weight"
        keys[f"readout.layers.{i}.bias"] = f"{s}bias{i}.bias"
    parts = {3: ("layernorm0.layernorm_part0", "conv0.conv_part0", "bias0"), 4: ("layernorm1", "conv1", "bias1")}
    for i, (norm, conv, bias) in parts.items():
        keys[f"readout.norms.{i}.weight"] = f"{f}{norm}.weight"
        keys[f"readout.norms.{i}.bias"] = f"{f}{norm}.bias"
        keys[f"readout.layers.{i}.weight"] = f"{f}{conv}.weight"
        keys[f"readout.layers.{i}.bias"] = f"{f}{bias}.bias"
    keys["readout.layers.5.weight"] = f"{f}conv2.weight"
    keys["finalizer.sigma"] = f"models.{b}.finalizers.{k}.gauss.sigma"
    keys["finalizer.centerbias_weight"] = f"models.{b}.finalizers.{k}.center_bias_weight"
    return keys


def _member_keys(kind: str) -> list[list[dict[str, str]]]:
    """Per pathway, per member: our parameter name (within the pathway) -> the authors' key."""
    if kind == DEEPGAZE1:
        keys = {
            "readout.layers.0.weight": "readout_network.conv0.weight",
            "finalizer.sigma": "finalizer.gauss.sigma",
            "finalizer.centerbias_weight": "finalizer.center_bias_weight",
        }
        return [[keys]]
    return [[_deepgaze2e_member_keys(b, k) for k in range(DEEPGAZE2E_MEMBERS)] for b in range(len(DEEPGAZE2E_BACKBONES))]


def _backbone_prefixes(kind: str) -> list[tuple[PublishedBackbone, str]]:
    if kind == DEEPGAZE1:
        return [(DEEPGAZE1_BACKBONE, "features.features.1.")]
    return [(b, f"models.{i}.features.features.1.") for i, b in enumerate(DEEPGAZE2E_BACKBONES)]


def _load_heads(model: DeepGaze, kind: str, state: Mapping[str, torch.Tensor]) -> None:
    prefixes = ["", *(f"pathways.{i}." for i in range(len(model.pathways)))]
    own = dict(model.named_parameters())
    with torch.no_grad():
        for prefix, members in zip(prefixes, _member_keys(kind)):
            for name in members[0]:
                target = own.pop(prefix + name)
                values = [state[keys[name]].reshape(target.shape[1:]) for keys in members]
                target.copy_(torch.stack(values))
    if own:  # every trainable tensor must come from the file
        raise AssertionError(f"converter left parameters unset: {sorted(own)}")


def _load_backbones(model: DeepGaze, kind: str, state: Mapping[str, torch.Tensor], where: str) -> None:
    for extractor, (backbone, prefix) in zip(model.backbones, _backbone_prefixes(kind)):
        network = extractor.network
        strip = _SHAPENET_PREFIX if backbone.name == "shapenet_c" else ""
        published = {key[len(prefix) :].removeprefix(strip): value for key, value in state.items() if key.startswith(prefix)}
        wanted = network.state_dict()  # the network pruned after its last tap: a subset of the file's keys
        missing = sorted(set(wanted) - set(published))
        if missing:
            raise WeightsError(f"{where}: the {backbone.name} backbone lacks {missing[:5]}")
        network.load_state_dict({key: published[key] for key in wanted}, strict=True)


def convert_official(
    kind: str,
    state_dict: Mapping[str, torch.Tensor],
    *,
    centerbias: np.ndarray | torch.Tensor | None = None,
    where: str,
) -> DeepGaze:
    """A `DeepGaze` equal to the authors' published model ``kind`` (``"deepgaze1"`` or ``"deepgaze2e"``).

    ``state_dict``: the published file's state dict (loaded with ``torch.load(...,
    weights_only=True)``); its layout is checked first (`check_layout`: `WeightsError` naming
    ``where``). The backbone weights are copied into the model (``weights="stored"``: saved in its
    ``model.safetensors``, pruned after the last tap); the readouts, blur sigmas and centre-bias
    weights of all members (1, or 4 x 30) become the model's parameters.

    ``centerbias``: the (rows, cols) natural-log-density template, e.g. the authors'
    ``centerbias_mit1003.npy`` (1024, 1024); it is resized to each image as the authors do
    (``scipy.ndimage.zoom`` order 0, then normalised). Default: deepgaze-hub's generic prior
    (`deepgaze_hub.model.default_centerbias_template`) at 1024 x 1024, not the authors' template.
    Returns the model in eval mode, on the CPU, float32.
    """
    check_layout(state_dict, kind, where)
    template = None
    if centerbias is not None:
        template = torch.as_tensor(np.asarray(centerbias, dtype=np.float32) if not torch.is_tensor(centerbias) else centerbias)
        side = MAX_CENTERBIAS_SIDE
        if template.ndim != 2 or not (2 <= min(template.shape) and max(template.shape) <= side):
            raise WeightsError(f"{where}: the centre bias must be a (rows, cols) array, 2 to {side} per side, got {tuple(template.shape)}")
        if not torch.isfinite(template).all():
            raise WeightsError(f"{where}: the centre bias has NaN or infinite values")
    shape = tuple(template.shape) if template is not None else (OFFICIAL_TEMPLATE_SIDE,) * 2
    model = DeepGaze(official_config(kind, shape))
    _load_backbones(model, kind, state_dict, where)
    _load_heads(model, kind, {key: value.float() for key, value in state_dict.items() if "features.features" not in key})
    if template is not None:
        model.set_centerbias(template.float())
    return model.eval()
