"""The DeepGaze model: backbone, readout, finalizer, centre bias, their configuration and files.

This package imports nothing from the rest of deepgaze-hub but ``errors``, ``io`` and ``version``;
`deepgaze_hub.hub` (registry, loading by name, publishing) builds on it.
"""

from .backbone import FeatureExtractor, build_backbone
from .card import CardMetric, ModelCardInfo, build_model_card
from .config import BACKBONE_PRESETS, BackboneConfig, DeepGazeConfig, PathwayConfig
from .deepgaze import DeepGaze
from .template import CenterBiasTemplate, default_centerbias_template

__all__ = [
    "BACKBONE_PRESETS",
    "BackboneConfig",
    "CardMetric",
    "CenterBiasTemplate",
    "DeepGaze",
    "DeepGazeConfig",
    "FeatureExtractor",
    "ModelCardInfo",
    "PathwayConfig",
    "build_backbone",
    "build_model_card",
    "default_centerbias_template",
]
