"""An independent, deliberately literal forward pass of DeepGaze I and DeepGaze IIE (docs/design.md),
computed from a state dict in the authors' published layout (``deepgaze1.pth``, ``deepgaze2e.pth``),
for fidelity tests of converted models.

Written step by step the way the authors' modules compute it: the image is downsampled (nearest)
before the normaliser; forward hooks copy each tapped module's output the moment it runs (so a conv
tap is the output before any in-place activation, a ``_depthwise_conv`` tap is the output before its
batch norm); one Python loop over the members of a backbone, each with its own readout and its own
finalizer; ``logsumexp - log 30`` over a backbone's members, then ``logsumexp - log 4`` over the
backbones. Readout weights are read straight from the state dict and applied with ``F.conv2d``;
nothing is shared with the package but `efficientnet_b5`, the one backbone torchvision does not
provide (it is checked on its own against the ``efficientnet_pytorch`` package when that is
installed).

One liberty: the backbone stops as soon as its last tap has been recorded (``full_forward=False``).
The layers after the last tap cannot change the taps, and running them would make small test images
fail (AlexNet's last max-pool needs a 3 x 3 input, i.e. images of at least ~126 px);
``full_forward=True`` runs the whole network as the authors do.

Conditioning: each member's fixation-selection network starts with a layer norm over its ONE-channel
saliency map (eps 1e-12). When that map is spatially constant (small images whose tapped maps are
1 x 1, e.g. DenseNet's block 4 below ~128 px), the norm divides rounding noise by ~1e-6, so results
then depend on the batch layout and arithmetic order (0.06 nats seen at 66 x 70 px). Compare models
on images of at least 128 px.

Shapes: images (B, 3, H, W) float32 in 0-255; centre bias (B, H, W) natural-log density; outputs
(B, H, W) natural-log densities (``exp(out).sum((1, 2)) == 1``).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import scipy.ndimage
import scipy.special
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from deepgaze_hub.model.efficientnet import efficientnet_b5

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The authors' constructions, written out again here (not imported from the package).
DEEPGAZE1 = {
    "build": lambda: torchvision.models.alexnet(weights=None),
    "taps": ["features.10"],
    "downsample": 2,
    "readout_factor": 4,
    "saliency_map_factor": 4,
}
DEEPGAZE2E_BACKBONES = [
    {
        "build": lambda: nn.Sequential(OrderedDict([("module", torchvision.models.resnet50(weights=None))])),
        "taps": [
            "module.layer3.0.conv2",
            "module.layer3.3.conv2",
            "module.layer3.5.conv1",
            "module.layer3.5.conv2",
            "module.layer4.1.conv2",
            "module.layer4.2.conv2",
        ],
    },
    {
        "build": efficientnet_b5,
        "taps": ["_blocks.24._depthwise_conv", "_blocks.26._depthwise_conv", "_blocks.35._project_conv"],
    },
    {
        "build": lambda: torchvision.models.densenet201(weights=None),
        "taps": [
            "features.denseblock4.denselayer32.norm1",
            "features.denseblock4.denselayer32.conv1",
            "features.denseblock4.denselayer31.conv2",
        ],
    },
    {
        "build": lambda: torchvision.models.resnext50_32x4d(weights=None),
        "taps": ["layer3.5.conv1", "layer3.5.conv2", "layer3.4.conv2", "layer4.2.conv2"],
    },
]
DEEPGAZE2E_MEMBERS = 30
DEEPGAZE2E_DOWNSAMPLE = 2
DEEPGAZE2E_READOUT_FACTOR = 16
DEEPGAZE2E_SALIENCY_MAP_FACTOR = 2
BLUR_TRUNCATE = 3


def authors_centerbias(template: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centre bias for an (height, width) image the way the authors' examples make it:
    ``scipy.ndimage.zoom`` of the (1024, 1024) log-density template, order 0, mode 'nearest', then
    minus its logsumexp. Returns (height, width) float64 natural-log density."""
    centerbias = scipy.ndimage.zoom(
        template, (height / template.shape[0], width / template.shape[1]), order=0, mode="nearest"
    )
    centerbias -= scipy.special.logsumexp(centerbias)
    return centerbias


def sub_state_dict(state_dict: dict[str, torch.Tensor], prefix: str) -> OrderedDict:
    """The entries whose key starts with ``prefix``, with the prefix removed."""
    return OrderedDict((key[len(prefix):], value) for key, value in state_dict.items() if key.startswith(prefix))


def load_network(build, state_dict: dict[str, torch.Tensor], prefix: str) -> nn.Module:
    """Build the network without allocating, then take the state dict's tensors as its own (strict)."""
    with torch.device("meta"):
        network = build()
    network.load_state_dict(sub_state_dict(state_dict, prefix), strict=True, assign=True)
    return network.eval()


class _AllTapsRecorded(Exception):
    pass


def tapped_outputs(network: nn.Module, taps: list[str], x: torch.Tensor, full_forward: bool) -> list[torch.Tensor]:
    """Run ``network`` on ``x`` with hooks that clone each tapped module's output, as the authors'
    FeatureExtractor does; the outputs in the order of ``taps``."""
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(network.named_modules())

    def hook_for(name):
        def hook(_module, _inputs, output):
            outputs[name] = output.clone()
            if not full_forward and len(outputs) == len(taps):
                raise _AllTapsRecorded

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in taps]
    try:
        network(x)
    except _AllTapsRecorded:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return [outputs[name] for name in taps]


def readout_input(
    network: nn.Module,
    taps: list[str],
    images: torch.Tensor,
    downsample: int,
    readout_factor: int,
    full_forward: bool = False,
) -> torch.Tensor:
    """Downsample, normalise, run the backbone, resize every tap (nearest) to the readout grid
    ceil(H / downsample / readout_factor) x ceil(W / ...), concatenate: (B, C, h, w)."""
    orig_shape = images.shape
    x = F.interpolate(images, scale_factor=1 / downsample, recompute_scale_factor=False)
    x = x / 255.0  # the normaliser: float64 mean/std applied in place to the float32 tensor
    x -= torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)
    x /= torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    outputs = tapped_outputs(network, taps, x, full_forward)
    readout_shape = [
        math.ceil(orig_shape[2] / downsample / readout_factor),
        math.ceil(orig_shape[3] / downsample / readout_factor),
    ]
    return torch.cat([F.interpolate(item, readout_shape) for item in outputs], dim=1)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """The authors' LayerNorm: mean and variance over (C, h, w) jointly, then a per-channel affine
    map given as per-element weights repeated over positions."""
    h, w = x.shape[2], x.shape[3]
    full_weight = torch.repeat_interleave(torch.repeat_interleave(weight.view(-1, 1, 1), h, dim=1), w, dim=2)
    full_bias = torch.repeat_interleave(torch.repeat_interleave(bias.view(-1, 1, 1), h, dim=1), w, dim=2)
    return F.layer_norm(x, (weight.shape[0], h, w), full_weight, full_bias, eps)


def gaussian_filter_1d(x: torch.Tensor, dim: int, sigma: torch.Tensor, truncate: float = BLUR_TRUNCATE) -> torch.Tensor:
    """Blur (B, 1, h, w) along ``dim`` (2 or 3): kernel of 2*ceil(truncate*sigma)+1 taps, normalised
    to sum 1, replicate padding of ceil((size-1)/2) on both sides."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype)
    size = int(2 * torch.ceil(truncate * sigma) + 1)
    mean = (size - 1) / 2
    grid = torch.arange(size, dtype=x.dtype) - mean
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    kernel = kernel / kernel.sum()
    pad = math.ceil((size - 1) / 2)
    if dim == 2:
        x = F.pad(x, (0, 0, pad, pad), mode="replicate")
        return F.conv2d(x, kernel.view(1, 1, size, 1))
    if dim == 3:
        x = F.pad(x, (pad, pad, 0, 0), mode="replicate")
        return F.conv2d(x, kernel.view(1, 1, 1, size))
    raise ValueError(dim)


def finalizer(
    readout: torch.Tensor,
    centerbias: torch.Tensor,
    sigma: torch.Tensor,
    center_bias_weight: torch.Tensor,
    saliency_map_factor: int,
) -> torch.Tensor:
    """(B, 1, h, w) readout, (B, H, W) centre bias -> (B, H, W) log density, the authors' order."""
    downscaled_centerbias = F.interpolate(
        centerbias.view(centerbias.shape[0], 1, centerbias.shape[1], centerbias.shape[2]),
        scale_factor=1 / saliency_map_factor,
        recompute_scale_factor=False,
    )[:, 0, :, :]
    out = F.interpolate(readout, size=[downscaled_centerbias.shape[1], downscaled_centerbias.shape[2]])
    out = gaussian_filter_1d(out, 2, sigma)
    out = gaussian_filter_1d(out, 3, sigma)
    out = out[:, 0, :, :]
    out = out + center_bias_weight * downscaled_centerbias
    out = F.interpolate(out[:, None, :, :], size=[centerbias.shape[1], centerbias.shape[2]])[:, 0, :, :]
    return out - out.logsumexp(dim=(1, 2), keepdim=True)


@torch.no_grad()
def deepgaze1_forward(
    state_dict: dict[str, torch.Tensor], images: torch.Tensor, centerbias: torch.Tensor, full_forward: bool = False
) -> torch.Tensor:
    """DeepGaze I: AlexNet tap -> one 1x1 conv without bias, no nonlinearity -> finalizer (factor 4)."""
    network = load_network(DEEPGAZE1["build"], state_dict, "features.features.1.")
    x = readout_input(
        network, DEEPGAZE1["taps"], images, DEEPGAZE1["downsample"], DEEPGAZE1["readout_factor"], full_forward
    )
    x = F.conv2d(x, state_dict["readout_network.conv0.weight"])
    return finalizer(
        x,
        centerbias,
        state_dict["finalizer.gauss.sigma"],
        state_dict["finalizer.center_bias_weight"],
        DEEPGAZE1["saliency_map_factor"],
    )


def deepgaze2e_member(
    state_dict: dict[str, torch.Tensor], b: int, k: int, features: torch.Tensor, centerbias: torch.Tensor
) -> torch.Tensor:
    """Member k of backbone b: saliency network, fixation-selection network, finalizer -> (B, H, W)."""
    p = f"models.{b}.saliency_networks.{k}."
    x = features
    for i in range(3):
        x = layer_norm(x, state_dict[p + f"layernorm{i}.weight"], state_dict[p + f"layernorm{i}.bias"])
        x = F.conv2d(x, state_dict[p + f"conv{i}.weight"])
        x = x + state_dict[p + f"bias{i}.bias"][None, :, None, None]
        x = F.softplus(x)
    q = f"models.{b}.fixation_selection_networks.{k}."
    x = layer_norm(x, state_dict[q + "layernorm0.layernorm_part0.weight"], state_dict[q + "layernorm0.layernorm_part0.bias"])
    x = F.conv2d(x, state_dict[q + "conv0.conv_part0.weight"])
    x = x + state_dict[q + "bias0.bias"][None, :, None, None]
    x = F.softplus(x)
    x = layer_norm(x, state_dict[q + "layernorm1.weight"], state_dict[q + "layernorm1.bias"])
    x = F.conv2d(x, state_dict[q + "conv1.weight"])
    x = x + state_dict[q + "bias1.bias"][None, :, None, None]
    x = F.softplus(x)
    x = F.conv2d(x, state_dict[q + "conv2.weight"])
    f = f"models.{b}.finalizers.{k}."
    return finalizer(
        x, centerbias, state_dict[f + "gauss.sigma"], state_dict[f + "center_bias_weight"], DEEPGAZE2E_SALIENCY_MAP_FACTOR
    )


@torch.no_grad()
def deepgaze2e_backbone_forward(
    state_dict: dict[str, torch.Tensor], b: int, images: torch.Tensor, centerbias: torch.Tensor, full_forward: bool = False
) -> torch.Tensor:
    """One backbone's mixture of its 30 members: (B, H, W) log density."""
    config = DEEPGAZE2E_BACKBONES[b]
    network = load_network(config["build"], state_dict, f"models.{b}.features.features.1.")
    features = readout_input(
        network, config["taps"], images, DEEPGAZE2E_DOWNSAMPLE, DEEPGAZE2E_READOUT_FACTOR, full_forward
    )
    predictions = []
    for k in range(DEEPGAZE2E_MEMBERS):
        predictions.append(deepgaze2e_member(state_dict, b, k, features, centerbias)[:, np.newaxis, :, :])
    predictions = torch.cat(predictions, dim=1) - np.log(DEEPGAZE2E_MEMBERS)
    return predictions.logsumexp(dim=1)


@torch.no_grad()
def deepgaze2e_forward(
    state_dict: dict[str, torch.Tensor], images: torch.Tensor, centerbias: torch.Tensor, full_forward: bool = False
) -> torch.Tensor:
    """DeepGaze IIE: the four backbones' mixtures mixed with equal weights: (B, H, W) log density."""
    predictions = [
        deepgaze2e_backbone_forward(state_dict, b, images, centerbias, full_forward)[:, np.newaxis, :, :]
        for b in range(len(DEEPGAZE2E_BACKBONES))
    ]
    predictions = torch.cat(predictions, dim=1)
    predictions -= np.log(len(DEEPGAZE2E_BACKBONES))
    return predictions.logsumexp(dim=1)
