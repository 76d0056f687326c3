"""torch.hub entry points of deepgaze-hub: exactly one per model of the registry (hub_configs/).

    import torch
    model = torch.hub.load("deepgaze-hub/deepgaze-hub", "deepgaze2_vgg19")   # published weights
    log_density = model.predict("image.jpg")   # (H, W) natural-log density, exp() sums to 1

Each entry point is the registry name with ``_`` for ``-`` and returns the same model as
``deepgaze_hub.load(name)``. Other models (a Hub repo, a directory) load with
``deepgaze_hub.load("hf-hub:owner/name")`` or ``deepgaze_hub.DeepGaze.from_pretrained``.

torch.hub puts only this directory on sys.path, but the package lives in src/: the entry points
import it from this checkout's src/ (unless deepgaze_hub is already imported) and always read
this checkout's registry. Every other name here starts with ``_`` so that ``torch.hub.list``
shows only the models.
"""

import importlib as _importlib
import sys as _sys
import textwrap as _textwrap
from pathlib import Path as _Path

dependencies = ["torch", "torchvision", "huggingface_hub", "safetensors", "numpy", "h5py", "PIL", "yaml"]

_ROOT = _Path(__file__).resolve().parent
_REGISTRY = _ROOT / "hub_configs"

_ARGS = """
    Args:
        pretrained: load the published weights (pinned Hub revision, sha256-checked); ``False``
            builds the untrained architecture (torchvision backbone weights still apply; pass
            ``backbone={"weights": None}`` for a random backbone).
        members: keep only these ensemble members, e.g. ``[3]``; ``None`` keeps all.
        overrides: ``map_location`` (device) and `deepgaze_hub.DeepGazeConfig` fields, e.g.
            ``resize_mode="antialias"``, ``backbone={"weights": "/path/vgg19.safetensors"}``.

    Returns:
        `deepgaze_hub.DeepGaze`; ``model(images)`` maps (B, 3, H, W) floats in [0, 255] to (B, H, W)
        natural-log densities, ``model.predict(path_or_image)`` takes anything image-like.
"""

_RELEASE = """

    The authors' release file is downloaded on first use (resumable, cached) from
    {url},
    its layout checked, converted once and cached; later loads read only the converted copy
    (offline works).
    The authors give no licence: research use at your discretion, do not re-host. Only
    ``pretrained=True`` applies.
"""


def _import(module):
    """Import ``module`` of this checkout's src/ without leaving src/ on sys.path."""
    src = str(_ROOT / "src")
    _sys.path.insert(0, src)
    try:
        return _importlib.import_module(module)
    finally:
        _sys.path.remove(src)


def _entry_point(entry):
    """The torch.hub function of one registry entry, documented from the entry."""
    name = entry.name

    def load(pretrained=True, members=None, **overrides):
        return _import("deepgaze_hub.hub").load(
            name, pretrained=pretrained, members=members, registry=_REGISTRY, **overrides
        )

    load.__name__ = load.__qualname__ = entry.entry_point
    status = "" if entry.published else " (declared: weights not published yet; use pretrained=False)"
    summary = _textwrap.fill(" ".join(entry.description.split()), 96, initial_indent="    ", subsequent_indent="    ")
    if entry.release is not None:
        summary += _RELEASE.format(url=entry.release.url)
    load.__doc__ = f"{entry.title or name}{status}.\n\n{summary}\n{_ARGS}"
    return load


for _entry in _import("deepgaze_hub.hub.registry").Registry(_REGISTRY).entries():
    globals()[_entry.entry_point] = _entry_point(_entry)
del _entry
