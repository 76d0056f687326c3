"""deepgaze-hub: DeepGaze II saliency prediction as a library, a model hub and a training recipe.

Log densities are natural logarithms (nats) per pixel, shaped (B, H, W) or (H, W); pixel
coordinates are x = column, y = row.
"""

from .io.images import ImageError, load_image
from .model import (
    BackboneConfig,
    BackboneError,
    ConfigError,
    DeepGaze,
    DeepGazeConfig,
    FeatureExtractor,
    WeightsError,
)
from .version import __version__

__all__ = [
    "BackboneConfig",
    "BackboneError",
    "ConfigError",
    "DeepGaze",
    "DeepGazeConfig",
    "FeatureExtractor",
    "ImageError",
    "WeightsError",
    "__version__",
    "load_image",
]
