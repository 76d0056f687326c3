"""Architecture configuration of a DeepGaze model, as plain data.

Every number of the forward pass (SPEC §1) is a field here; the defaults reproduce the reference
implementation of DeepGaze II. A config round-trips through JSON (`to_json` / `from_json`) and is
what `save_pretrained` writes as ``config.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import DeepGazeError
from ..io.atomic import atomic_write_text

#: Version of the config layout. Bump it when a field changes meaning, and add a migration below.
CONFIG_FORMAT_VERSION = 1

#: The five maps of VGG-19's last block that DeepGaze II reads (conv5_1, relu5_1, relu5_2, conv5_3,
#: relu5_4), named as submodules of torchvision's ``vgg19()``.
VGG19_DEEPGAZE2_LAYERS = ("features.28", "features.29", "features.31", "features.32", "features.35")

#: Known good taps for other torchvision backbones: ``name -> (layers, channels per layer)``.
#: The DenseNet-201 and ResNeXt-50 taps are the ones used by DeepGaze IIE.
BACKBONE_PRESETS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "vgg19": (VGG19_DEEPGAZE2_LAYERS, (512,) * 5),
    "densenet201": (
        (
            "features.denseblock4.denselayer32.norm1",
            "features.denseblock4.denselayer32.conv1",
            "features.denseblock4.denselayer31.conv2",
        ),
        (1888, 128, 32),
    ),
    "resnext50_32x4d": (
        ("layer3.5.conv1", "layer3.5.conv2", "layer3.4.conv2", "layer4.2.conv2"),
        (512, 512, 512, 1024),
    ),
}

NONLINEARITIES = ("relu", "softplus")
RESIZE_MODES = ("nearest", "antialias")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConfigError(DeepGazeError, ValueError):
    """A config (or config.json) that cannot be used; the message says which field and why."""


@dataclass
class BackboneConfig:
    """The frozen feature network and the submodules whose outputs are read.

    Attributes:
        name: a torchvision classification model name (``torchvision.models.list_models()``), or
            ``"custom"`` for a module the caller passes in (``DeepGaze(config, backbone=module)``).
        weights: torchvision weights enum member (``"IMAGENET1K_V1"``, ``"DEFAULT"``), a path to a
            ``.safetensors`` state dict, or ``None`` for a random initialisation seeded by ``init_seed``.
        layers: dotted submodule names whose outputs are tapped, in concatenation order.
        channels: channels of each tapped output; ``None`` (default) means "infer with a dry run";
            the model then records them, so saved configs always carry them.
        mean, std: per-channel normalisation applied after dividing by ``input_scale``.
        input_scale: the model's input is divided by this (255: the model takes 0-255 floats).
        init_seed: seed of the random initialisation when ``weights`` is ``None``.
    """

    name: str = "vgg19"
    weights: str | None = "IMAGENET1K_V1"
    layers: list[str] = field(default_factory=lambda: list(VGG19_DEEPGAZE2_LAYERS))
    channels: list[int] | None = None
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    input_scale: float = 255.0
    init_seed: int = 0

    @classmethod
    def preset(cls, name: str, weights: str | None = "DEFAULT", **overrides: Any) -> BackboneConfig:
        """The config of a backbone listed in `BACKBONE_PRESETS`, e.g. ``preset("densenet201")``."""
        if name not in BACKBONE_PRESETS:
            raise ConfigError(
                f"no layer preset for backbone {name!r}; known: {sorted(BACKBONE_PRESETS)}. "
                "Pass layers=[...] (submodule names) to BackboneConfig instead."
            )
        layers, channels = BACKBONE_PRESETS[name]
        values = dict(name=name, weights=weights, layers=list(layers), channels=list(channels))
        values.update(overrides)
        return cls(**values)

    def validate(self) -> None:
        if not self.layers:
            raise ConfigError("backbone.layers is empty: name at least one submodule to read")
        if self.channels is not None and len(self.channels) != len(self.layers):
            raise ConfigError(
                f"backbone.channels has {len(self.channels)} entries for {len(self.layers)} layers"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ConfigError("backbone.mean and backbone.std need 3 values each, std > 0")
        if self.input_scale <= 0:
            raise ConfigError("backbone.input_scale must be > 0")


@dataclass
class DeepGazeConfig:
    """Every architecture setting of a `DeepGaze` model (SPEC §1 defaults = DeepGaze II reference).

    Attributes:
        backbone: see `BackboneConfig`.
        num_members: K, the number of readouts in the ensemble (1 = single model).
        downsample: the image is shrunk by this factor before the backbone.
        readout_factor: the readout grid is ``ceil(H / downsample / readout_factor)`` rows high.
        saliency_map_factor: the finalizer works on the centre bias shrunk by this factor.
        readout_channels: output channels of the 1x1 convolutions; the last must be 1.
        nonlinearity: after each readout layer but the last; ``"relu"`` (paper) or ``"softplus"``
            (the reference PyTorch code).
        initial_sigma: initial blur sigma, in pixels of the finalizer grid (H / saliency_map_factor).
        blur_truncate: the blur kernel has ``2 * ceil(blur_truncate * sigma) + 1`` taps.
        initial_centerbias_weight: initial weight of the centre-bias log density.
        learn_sigma, learn_centerbias_weight: whether those two are trained.
        resize_mode: ``"nearest"`` reproduces the reference exactly; ``"antialias"`` uses
            antialiased bilinear resizing everywhere instead (smoother maps, not the reference).
        centerbias_shape: (rows, cols) of the stored centre-bias template, in normalised image
            coordinates; it is resized to each image.
        format_version: layout version of this config (checked on load).
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    num_members: int = 1
    downsample: float = 2.0
    readout_factor: int = 16
    saliency_map_factor: int = 2
    readout_channels: list[int] = field(default_factory=lambda: [16, 32, 2, 1])
    nonlinearity: str = "softplus"
    initial_sigma: float = 8.0
    blur_truncate: float = 3.0
    initial_centerbias_weight: float = 1.0
    learn_sigma: bool = True
    learn_centerbias_weight: bool = True
    resize_mode: str = "nearest"
    centerbias_shape: list[int] = field(default_factory=lambda: [256, 256])
    format_version: int = CONFIG_FORMAT_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = _from_mapping(BackboneConfig, self.backbone, "backbone")
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` naming the first field that is out of range."""
        self.backbone.validate()
        if self.num_members < 1:
            raise ConfigError(f"num_members must be >= 1, got {self.num_members}")
        if self.downsample <= 0 or self.readout_factor < 1 or self.saliency_map_factor < 1:
            raise ConfigError("downsample must be > 0; readout_factor and saliency_map_factor >= 1")
        if not self.readout_channels or self.readout_channels[-1] != 1:
            raise ConfigError(f"readout_channels must end with 1, got {self.readout_channels}")
        if any(c < 1 for c in self.readout_channels):
            raise ConfigError(f"readout_channels must be positive, got {self.readout_channels}")
        if self.nonlinearity not in NONLINEARITIES:
            raise ConfigError(f"nonlinearity must be one of {NONLINEARITIES}, got {self.nonlinearity!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.initial_sigma <= 0 or self.blur_truncate <= 0:
            raise ConfigError("initial_sigma and blur_truncate must be > 0")
        if len(self.centerbias_shape) != 2 or min(self.centerbias_shape) < 2:
            raise ConfigError(f"centerbias_shape must be [rows, cols] >= 2, got {self.centerbias_shape}")

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeepGazeConfig:
        """Parse a config dict, migrating older layouts and refusing newer or unknown ones."""
        data = dict(data)
        version = data.get("format_version", CONFIG_FORMAT_VERSION)
        if not isinstance(version, int) or version > CONFIG_FORMAT_VERSION:
            raise ConfigError(
                f"config format_version {version!r} is newer than this deepgaze-hub understands "
                f"(<= {CONFIG_FORMAT_VERSION}); upgrade with `pip install -U deepgaze-hub`"
            )
        # Migrations from older layouts go here (none yet: format 1 is the first release).
        return _from_mapping(cls, data, "config")

    def to_json(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> DeepGazeConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read model config {path}: {error}") from error
        if not isinstance(data, dict):
            raise ConfigError(f"model config {path} is not a JSON object")
        return cls.from_dict(data)


def _from_mapping(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{where} has unknown fields {unknown}; it was written by another deepgaze-hub version "
            f"or edited by hand (known fields: {sorted(known)})"
        )
    try:
        return cls(**data)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from error
