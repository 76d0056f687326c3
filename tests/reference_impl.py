"""An independent, deliberately literal DeepGaze II forward pass (SPEC §1), for fidelity tests.

Written step by step the way the reference implementation computes it: interpolate calls,
padded 1-d convolutions for the blur, per-member readouts run one after another with
``nn.functional.conv2d``, the normaliser at full resolution. It shares no code with the package
except reading the model's parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deepgaze_hub import DeepGaze


def vgg_taps(vgg_features: torch.nn.Sequential, x: torch.Tensor, indices: list[int]) -> list[torch.Tensor]:
    """Run torchvision's vgg.features module by module, out of place, keeping outputs at indices."""
    outputs = {}
    for i, layer in enumerate(vgg_features):
        if i > max(indices):
            break
        if isinstance(layer, torch.nn.ReLU):
            x = F.relu(x)  # out of place: the conv output kept below stays intact
        else:
            x = layer(x)
        if i in indices:
            outputs[i] = x
    return [outputs[i] for i in indices]


def gaussian_blur_1d(x: torch.Tensor, dim: int, sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """Blur along ``dim`` with the reference's kernel: 2*ceil(truncate*sigma)+1 taps, replicate padding."""
    size = 2 * math.ceil(truncate * sigma) + 1
    grid = torch.arange(size, dtype=x.dtype) - (size - 1) / 2
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    kernel = kernel / kernel.sum()
    moved = x.movedim(dim, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, shape[-1])
    pad = (size - 1) // 2
    flat = F.pad(flat, (pad, pad), mode="replicate")
    out = F.conv1d(flat, kernel.view(1, 1, -1))
    return out.reshape(shape).movedim(-1, dim)


def member_log_density(
    model: DeepGaze, images: torch.Tensor, centerbias: torch.Tensor, member: int, features: torch.Tensor
) -> torch.Tensor:
    """One member's log density (B, H, W) computed the reference way from concatenated features."""
    cfg = model.config
    x = features
    layers = model.readout.layers
    for j, layer in enumerate(layers):
        weight = layer.weight[member].detach()
        bias = layer.bias[member].detach() if layer.bias is not None else None
        x = F.conv2d(x, weight[:, :, None, None], bias)
        if j < len(layers) - 1:
            x = F.softplus(x) if cfg.nonlinearity == "softplus" else F.relu(x)
    # finalizer
    height, width = images.shape[-2:]
    small_cb = F.interpolate(centerbias[:, None], scale_factor=1 / cfg.saliency_map_factor, recompute_scale_factor=False)[:, 0]
    out = F.interpolate(x, size=list(small_cb.shape[-2:]))
    sigma = float(model.finalizer.sigma[member])
    out = gaussian_blur_1d(out, 2, sigma, cfg.blur_truncate)
    out = gaussian_blur_1d(out, 3, sigma, cfg.blur_truncate)[:, 0]
    out = out + float(model.finalizer.centerbias_weight[member]) * small_cb
    out = F.interpolate(out[:, None], size=[height, width])[:, 0]
    return out - out.logsumexp(dim=(1, 2), keepdim=True)


def reference_forward(model: DeepGaze, images: torch.Tensor, centerbias: torch.Tensor, layer_indices: list[int]) -> torch.Tensor:
    """The mixture of all members, the backbone being torchvision VGG-style ``network.features``."""
    cfg = model.config
    height, width = images.shape[-2:]
    x = F.interpolate(images, scale_factor=1 / cfg.downsample, recompute_scale_factor=False)
    mean = torch.tensor(cfg.backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.backbone.std).view(1, 3, 1, 1)
    x = (x / 255.0 - mean) / std
    with torch.no_grad():
        taps = vgg_taps(model.backbone.network.features, x, layer_indices)
    grid = [math.ceil(height / cfg.downsample / cfg.readout_factor), math.ceil(width / cfg.downsample / cfg.readout_factor)]
    features = torch.cat([F.interpolate(t, grid) for t in taps], dim=1)
    members = [member_log_density(model, images, centerbias, k, features) for k in range(cfg.num_members)]
    stacked = torch.stack(members)
    return stacked.logsumexp(dim=0) - math.log(len(members))
