"""Architecture configuration of a DeepGaze model, as plain data.

Every number of the forward pass (docs/design.md) is a field here; the defaults reproduce the
reference implementation of DeepGaze II. A config round-trips through JSON (`to_json` /
`from_json`) and is what `save_pretrained` writes as ``config.json``. Every field has a type and
bounds (`deepgaze_hub.io.typed`), checked when a config is built, parsed or read, before any
tensor is allocated: a ``config.json`` from anywhere cannot ask for an 80 GB centre bias.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.atomic import atomic_write_text
from ..io.typed import bounded, parse, read_json, validate

#: Version of the config layout. Bump it when a field changes meaning, and add a migration below.
#: 2: further backbones (``pathways``), readout layer norms, ``centerbias_resize``; format-1
#: configs are format-2 configs with those at their defaults.
CONFIG_FORMAT_VERSION = 2

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
#: How the centre-bias template is resized to an image: antialiased bilinear (default), or the
#: DeepGaze family authors' ``scipy.ndimage.zoom(template, (H/h0, W/w0), order=0)`` (nearest).
CENTERBIAS_RESIZE_MODES = ("bilinear", "zoom_nearest")
#: ``BackboneConfig.weights`` value for weights saved in the model's own ``model.safetensors``.
STORED_WEIGHTS = "stored"
#: Backbones that are not torchvision models (built by deepgaze-hub itself).
EFFICIENTNET_B5_STATIC = "efficientnet_b5_static456"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: Largest side of the centre-bias template, in cells.
MAX_CENTERBIAS_SIDE = 4096
#: Most ensemble members a config may declare.
MAX_MEMBERS = 1000
#: Most channels of one readout layer or one tapped backbone output.
MAX_CHANNELS = 65536


@dataclass
class BackboneConfig:
    """The frozen feature network and the submodules whose outputs are read.

    Attributes:
        name: a torchvision classification model name (``torchvision.models.list_models()``),
            ``"efficientnet_b5_static456"`` (EfficientNet-B5 in the ``efficientnet_pytorch`` layout,
            padded statically for 456 px: DeepGaze IIE's), or ``"custom"`` for a module the caller
            passes in (``DeepGaze(config, backbone=module)``).
        weights: torchvision weights enum member (``"IMAGENET1K_V1"``, ``"DEFAULT"``), a path to a
            ``.safetensors`` state dict, ``"hf-hub:OWNER/NAME@COMMIT?sha256=HEX"`` (a safetensors file
            on the Hugging Face Hub in torchvision's or timm's layout, pinned to a commit and checked
            against the sha256), ``"stored"`` (saved in the model's own ``model.safetensors``
            under ``backbones.<i>.``, i = the backbone's position), or ``None`` for a random
            initialisation seeded by ``init_seed``.
        layers: dotted submodule names whose outputs are tapped, in concatenation order.
        channels: channels of each tapped output; ``None`` (default) means "infer with a dry run";
            the model then records them, so saved configs always carry them.
        mean, std: per-channel normalisation applied after dividing by ``input_scale``.
        input_scale: the model's input is divided by this (255: the model takes 0-255 floats).
        init_seed: seed of the random initialisation when ``weights`` is ``None``.
    """

    name: str = bounded("vgg19", min_len=1, max_len=200, help="torchvision model name, or 'custom'")
    weights: str | None = bounded(
        "IMAGENET1K_V1", min_len=1, max_len=4096, help="torchvision weights name, a .safetensors path, 'hf-hub:OWNER/NAME@COMMIT?sha256=HEX' (safetensors on the Hub, pinned), 'stored' (in model.safetensors), or null"
    )
    layers: list[str] = bounded(
        default_factory=lambda: list(VGG19_DEEPGAZE2_LAYERS), min_len=1, max_len=64, help="tapped submodules"
    )
    channels: list[int] | None = bounded(
        None, min_len=1, max_len=64, item_ge=1, item_le=MAX_CHANNELS, help="channels of each tapped output"
    )
    mean: list[float] = bounded(
        default_factory=lambda: list(IMAGENET_MEAN), min_len=3, max_len=3, item_ge=-1e3, item_le=1e3,
        help="per-channel mean (after dividing by input_scale)",
    )  # fmt: skip
    std: list[float] = bounded(
        default_factory=lambda: list(IMAGENET_STD), min_len=3, max_len=3, item_ge=1e-6, item_le=1e3,
        help="per-channel standard deviation (after dividing by input_scale)",
    )  # fmt: skip
    input_scale: float = bounded(255.0, gt=0, le=1e6, help="the input is divided by this")
    init_seed: int = bounded(0, ge=0, le=2**63 - 1, help="seed of a random initialisation")

    def __post_init__(self) -> None:
        self.validate()

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

    def validate(self, where: str = "BackboneConfig") -> None:
        """Raise `ConfigError` naming the first field of the wrong type or out of bounds."""
        validate(self, where)


#: Most backbones one model may combine.
MAX_PATHWAYS = 16


def _check_pathway(where: str, backbone: BackboneConfig, readout_channels: list[int]) -> None:
    if backbone.channels is not None and len(backbone.channels) != len(backbone.layers):
        raise ConfigError(
            f"{where}: backbone.channels has {len(backbone.channels)} entries for {len(backbone.layers)} layers"
        )
    if readout_channels[-1] != 1:
        raise ConfigError(f"{where}: readout_channels must end with 1, got {readout_channels}")


@dataclass
class _PathwayFields:
    """The fields of one pathway, shared by `PathwayConfig` and (its first pathway) `DeepGazeConfig`."""

    backbone: BackboneConfig = bounded(default_factory=BackboneConfig, help="the feature network")
    num_members: int = bounded(1, ge=1, le=MAX_MEMBERS, help="number of ensemble members K")
    downsample: float = bounded(2.0, gt=0, le=64, help="the image is shrunk by this before the backbone")
    readout_factor: int = bounded(16, ge=1, le=1024, help="the readout grid is H / downsample / this")
    saliency_map_factor: int = bounded(2, ge=1, le=1024, help="the finalizer grid is H / this")
    readout_channels: list[int] = bounded(
        default_factory=lambda: [16, 32, 2, 1], min_len=1, max_len=32, item_ge=1, item_le=MAX_CHANNELS,
        help="output channels of the readout's 1x1 convolutions; the last is 1",
    )  # fmt: skip
    nonlinearity: str = bounded("softplus", choices=NONLINEARITIES, help="readout nonlinearity")
    readout_layer_norm: bool = bounded(False, help="layer norm before every readout convolution but the last")
    initial_sigma: float = bounded(8.0, gt=0, le=1000, help="initial blur sigma, finalizer-grid pixels")
    blur_truncate: float = bounded(3.0, gt=0, le=20, help="blur kernel half-width, in sigmas")
    initial_centerbias_weight: float = bounded(1.0, ge=-1e3, le=1e3, help="initial centre-bias weight")
    learn_sigma: bool = bounded(True, help="train the blur sigma")
    learn_centerbias_weight: bool = bounded(True, help="train the centre-bias weight")


@dataclass
class PathwayConfig(_PathwayFields):
    """One backbone with its own ensemble of readouts and finalizers (a "pathway").

    The fields mean what the `DeepGazeConfig` fields of the same names mean; `DeepGazeConfig`'s
    top-level fields describe the first pathway, ``DeepGazeConfig.pathways`` the further ones.
    ``readout_layer_norm``: a layer norm over channels and positions (``GroupNorm(1, C,
    eps=1e-12)``, per-channel scale and shift) before every readout convolution but the last, as
    in DeepGaze IIE.
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "PathwayConfig") -> None:
        """Raise `ConfigError` naming the first field of the wrong type or out of bounds."""
        validate(self, where)
        _check_pathway(where, self.backbone, self.readout_channels)


#: The `DeepGazeConfig` fields that describe its first pathway (all `PathwayConfig` fields).
PATHWAY_FIELDS = tuple(_PathwayFields.__dataclass_fields__)


@dataclass
class TrainingScale:
    """The image scale a model was trained at; prediction shrinks larger images to it.

    Attributes:
        pixels_per_degree: pixels per degree of visual angle of the training images (35 for
            MIT1003), or ``None`` if unknown (then prediction cannot rescale to a viewing geometry).
        long_side: the training images' long side in pixels (1024 for MIT1003): by default,
            images with a longer side are shrunk to it before prediction (`deepgaze_hub.io.scale`).
    """

    pixels_per_degree: float | None = bounded(35.0, gt=0, le=1e4, help="pixels per degree of the training images")
    long_side: int = bounded(1024, ge=1, le=1_000_000, help="long side of the training images, pixels")

    def __post_init__(self) -> None:
        validate(self, "TrainingScale")


@dataclass
class DeepGazeConfig(_PathwayFields):
    """Every architecture setting of a `DeepGaze` model (the defaults are the DeepGaze II reference).

    Attributes:
        backbone: see `BackboneConfig`.
        num_members: K, the number of readouts in the ensemble (1 = single model).
        downsample: the image is shrunk by this factor before the backbone.
        readout_factor: the readout grid is ``ceil(H / downsample / readout_factor)`` rows high.
        saliency_map_factor: the finalizer works on the centre bias shrunk by this factor.
        readout_channels: output channels of the 1x1 convolutions; the last must be 1.
        nonlinearity: after each readout layer but the last; ``"relu"`` (paper) or ``"softplus"``
            (the reference PyTorch code).
        readout_layer_norm: a layer norm (over channels and positions, eps 1e-12) before every
            readout convolution but the last (DeepGaze IIE); default False (DeepGaze II).
        initial_sigma: initial blur sigma, in pixels of the finalizer grid (H / saliency_map_factor).
        blur_truncate: the blur kernel has ``2 * ceil(blur_truncate * sigma) + 1`` taps.
        initial_centerbias_weight: initial weight of the centre-bias log density.
        learn_sigma, learn_centerbias_weight: whether those two are trained.
        pathways: further backbones, each with its own members (`PathwayConfig`); the fields above
            describe the first. The density is the mixture of ALL members of all backbones with
            equal weights; member indices count the first backbone's members first.
        resize_mode: ``"nearest"`` reproduces the reference exactly; ``"antialias"`` uses
            antialiased bilinear resizing everywhere instead (smoother maps, not the reference).
        centerbias_shape: (rows, cols) of the stored centre-bias template, in normalised image
            coordinates; it is resized to each image. Each side is 2 to 4096 cells.
        centerbias_resize: how the template is resized to an image: ``"bilinear"`` (antialiased,
            default) or ``"zoom_nearest"`` (``scipy.ndimage.zoom(..., order=0)``, as the DeepGaze
            family's authors do).
        training_scale: the image scale the model was trained at (`TrainingScale`; default
            MIT1003's, 35 pixels per degree and 1024 pixels on the long side, which also describes
            configs saved before the field existed), or ``None`` for a model that does not know it
            (its images are then always predicted at their own size).
        format_version: layout version of this config (checked on load).
    """

    pathways: list[PathwayConfig] = bounded(
        default_factory=list, max_len=MAX_PATHWAYS - 1, help="further backbones with their own members"
    )
    resize_mode: str = bounded("nearest", choices=RESIZE_MODES, help="'nearest' (reference) or 'antialias'")
    centerbias_shape: list[int] = bounded(
        default_factory=lambda: [256, 256], min_len=2, max_len=2, item_ge=2, item_le=MAX_CENTERBIAS_SIDE,
        help="(rows, cols) of the centre-bias template",
    )  # fmt: skip
    centerbias_resize: str = bounded(
        "bilinear", choices=CENTERBIAS_RESIZE_MODES, help="how the template is resized to an image"
    )
    training_scale: TrainingScale | None = bounded(
        default_factory=TrainingScale, help="the image scale the model was trained at, or null"
    )
    format_version: int = bounded(CONFIG_FORMAT_VERSION, ge=1, le=CONFIG_FORMAT_VERSION, help="config layout version")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "DeepGazeConfig") -> None:
        """Raise `ConfigError` naming the first field of the wrong type or out of bounds.

        A ``backbone`` given as a mapping becomes a `BackboneConfig`.
        """
        validate(self, where)
        _check_pathway(where, self.backbone, self.readout_channels)
        if self.total_members > MAX_MEMBERS:
            raise ConfigError(f"{where}: {self.total_members} members in all; at most {MAX_MEMBERS}")

    def all_pathways(self) -> list[PathwayConfig]:
        """Every pathway, the first made of this config's top-level fields (objects shared, not copied)."""
        first = PathwayConfig.__new__(PathwayConfig)  # no re-validation: these fields are checked
        for name in PATHWAY_FIELDS:
            object.__setattr__(first, name, getattr(self, name))
        return [first, *self.pathways]

    def with_pathways(self, pathways: Sequence[PathwayConfig]) -> DeepGazeConfig:
        """This config with its pathways replaced: the first's fields at the top level, the rest in ``pathways``."""
        first, *rest = pathways
        return replace(self, **{name: getattr(first, name) for name in PATHWAY_FIELDS}, pathways=list(rest))

    def with_member_counts(self, *counts: int) -> DeepGazeConfig:
        """This config with ``num_members`` of every pathway set: one count for all, or one per pathway."""
        pathways = self.all_pathways()
        counts = counts * len(pathways) if len(counts) == 1 else counts
        if len(counts) != len(pathways):
            raise ValueError(f"got {len(counts)} member counts for {len(pathways)} pathways")
        return self.with_pathways([replace(p, num_members=n) for p, n in zip(pathways, counts)])

    @property
    def total_members(self) -> int:
        """Members of all pathways together."""
        return self.num_members + sum(pathway.num_members for pathway in self.pathways)

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> DeepGazeConfig:
        """Parse a config dict, migrating older layouts and refusing newer or unknown ones.

        Errors (`ConfigError`) start with ``where`` (e.g. the file) and name the field.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a model config must be a mapping of fields, got {type(data).__name__}")
        data = dict(data)
        version = data.get("format_version", CONFIG_FORMAT_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError(f"{where}: format_version must be an integer >= 1, got {version!r}")
        if version > CONFIG_FORMAT_VERSION:
            raise ConfigError(
                f"{where}: config format_version {version!r} is newer than this deepgaze-hub understands "
                f"(<= {CONFIG_FORMAT_VERSION}); upgrade with `pip install -U deepgaze-hub`"
            )
        if version == 1:  # format 2 only added fields, whose defaults describe every format-1 model
            data["format_version"] = 2
        try:
            return parse(cls, data, where)
        except ConfigError as error:  # the checks of __post_init__ do not know the file: name it
            message = str(error)
            if message.startswith(f"{where}:"):
                raise
            raise ConfigError(f"{where}: {message.removeprefix(f'{cls.__name__}: ')}") from None

    def to_json(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: str | Path, where: str | None = None) -> DeepGazeConfig:
        """Read a ``config.json``; errors name ``where`` (default: the file) and the field."""
        return cls.from_dict(read_json(path, "model config"), where or str(path))


def apply_overrides(config: DeepGazeConfig | dict[str, Any], overrides: dict[str, Any], where: str) -> DeepGazeConfig:
    """``config`` (a config or its mapping) with some fields changed; ``backbone`` may be a partial mapping.

    E.g. ``apply_overrides(config, {"resize_mode": "antialias", "backbone": {"weights": None}}, "x")``.
    Errors (`ConfigError`) are prefixed with ``where``.
    """
    data = config.to_dict() if isinstance(config, DeepGazeConfig) else dict(config)
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for key, value in overrides.items():
        if is_dataclass(value):
            value = asdict(value)
        if key == "backbone" and isinstance(value, dict):
            data["backbone"] = {**data.get("backbone", {}), **value}
        else:
            data[key] = value
    try:
        return DeepGazeConfig.from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error
