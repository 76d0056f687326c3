"""torch.hub entry points of deepgaze-hub: one per model of the registry (hub_configs/), plus from_pretrained.

    import torch
    model = torch.hub.load("deepgaze-hub/deepgaze-hub", "deepgaze2_vgg19")   # published weights
    log_density = model.predict("image.jpg")   # (H, W) natural-log density, exp() sums to 1

torch.hub puts only this directory on sys.path, but the package lives in src/: the entry points
import it from this checkout's src/ (unless deepgaze_hub is already imported) and always read
this checkout's registry, so they return the same models as ``deepgaze_hub.load(name)``.
"""

import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "huggingface_hub", "safetensors", "numpy", "h5py", "PIL", "yaml"]

_ROOT = Path(__file__).resolve().parent


def deepgaze2_vgg19(pretrained=True, members=None, **overrides):
    """DeepGaze II with VGG-19 features: the paper's ensemble of the 10 MIT1003 cross-validation models.

    Args:
        pretrained: load the published weights (pinned Hub revision, sha256-checked); ``False``
            builds the untrained architecture (the VGG-19 ImageNet weights still come from
            torchvision; pass ``backbone={"weights": None}`` for a random backbone).
        members: keep only these ensemble members, e.g. ``[3]`` (the model that did not train on
            fold 3); ``None`` keeps all 10.
        overrides: `deepgaze_hub.DeepGazeConfig` fields, e.g. ``map_location="cuda"``,
            ``resize_mode="antialias"``, ``backbone={"weights": "/path/vgg19.safetensors"}``.

    Returns:
        `deepgaze_hub.DeepGaze`; ``model(images)`` maps (B, 3, H, W) floats in [0, 255] to (B, H, W)
        natural-log densities, ``model.predict(path_or_image)`` takes anything image-like.
    """
    return _load("deepgaze2-vgg19", pretrained, members, overrides)


def from_pretrained(repo_id_or_path, revision=None, **kwargs):
    """Any DeepGaze model saved with ``save_pretrained`` or ``push_to_hub``: a Hub repo id or a directory.

    ``revision``: pin a commit hash. Other keyword arguments go to ``DeepGaze.from_pretrained``
    (``map_location``, ``members``, ``cache_dir`` ...). Only safetensors files are read.
    """
    return _import("deepgaze_hub.model.deepgaze").DeepGaze.from_pretrained(repo_id_or_path, revision=revision, **kwargs)


def _load(name, pretrained, members, overrides):
    registry = _import("deepgaze_hub.hub.registry")
    return registry.load(name, pretrained, members, registry=_ROOT / "hub_configs", **overrides)


def _import(module):
    """Import ``module`` of this checkout's src/ without leaving src/ on sys.path."""
    import importlib

    src = str(_ROOT / "src")
    sys.path.insert(0, src)
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(src)
