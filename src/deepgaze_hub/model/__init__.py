"""The DeepGaze model: backbone, readout, finalizer, centre bias, and their configuration."""

from .backbone import BackboneError, FeatureExtractor, build_backbone
from .centerbias import CenterBias, default_centerbias_template
from .config import BACKBONE_PRESETS, BackboneConfig, ConfigError, DeepGazeConfig
from .deepgaze import DeepGaze
from .serialization import WeightsError

__all__ = [
    "BACKBONE_PRESETS",
    "BackboneConfig",
    "BackboneError",
    "CenterBias",
    "ConfigError",
    "DeepGaze",
    "DeepGazeConfig",
    "FeatureExtractor",
    "WeightsError",
    "build_backbone",
    "default_centerbias_template",
]
