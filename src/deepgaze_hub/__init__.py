"""deepgaze-hub: DeepGaze II saliency prediction as a library, a model hub and a training recipe.

Conventions everywhere: log densities are natural logarithms (nats) per pixel, shaped (B, H, W) or
(H, W) and summing to 1 after ``exp``; information gains are in bits per fixation; pixel
coordinates are floats with x = column and y = row, and a fixation at (x, y) falls in pixel
``[int(y), int(x)]``. Images for ``DeepGaze.forward`` are (B, 3, H, W) floats in [0, 255];
``DeepGaze.predict`` accepts anything (see `deepgaze_hub.io.images`).
"""

from .baselines import CenterBiasModel, GoldStandardModel, fit_centerbias, fit_gold_standard
from .data import DatasetError, FixationDataset, Fixations, default_dataset, kfold_assignments
from .errors import DeepGazeError
from .evaluation import (
    EvaluationError,
    EvaluationReport,
    ExplainedInformationGain,
    MetricInputError,
    MetricResult,
    evaluate_log_densities,
    evaluate_model,
    explained_information_gain,
    information_gain,
    log_likelihood,
    write_report,
)
from .hub.card import EvaluationResult, ModelCardInfo
from .hub.integrity import IntegrityError
from .hub.publish import PublishError
from .hub.registry import ModelNotPublishedError, RegistryError, list_models, load
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
from .model.ensemble import select_members, stack_members
from .sampling import sample_fixations
from .version import __version__
from .visualization import density_overlay

#: Names that need Lightning, imported on first use so that predicting or serving does not pay
#: Lightning's import time.
_TRAINING_NAMES = ("DeepGazeModule", "FixationDataModule", "RecipeError", "load_recipe")


def __getattr__(name: str):
    if name in _TRAINING_NAMES:
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module 'deepgaze_hub' has no attribute {name!r}")

__all__ = [
    "BackboneConfig",
    "BackboneError",
    "CenterBiasModel",
    "ConfigError",
    "DatasetError",
    "DeepGaze",
    "DeepGazeConfig",
    "DeepGazeError",
    "DeepGazeModule",
    "EvaluationError",
    "EvaluationReport",
    "EvaluationResult",
    "ExplainedInformationGain",
    "FeatureExtractor",
    "FixationDataModule",
    "FixationDataset",
    "Fixations",
    "GoldStandardModel",
    "ImageError",
    "IntegrityError",
    "MetricInputError",
    "MetricResult",
    "ModelCardInfo",
    "ModelNotPublishedError",
    "PublishError",
    "RecipeError",
    "RegistryError",
    "WeightsError",
    "__version__",
    "default_dataset",
    "density_overlay",
    "evaluate_log_densities",
    "evaluate_model",
    "explained_information_gain",
    "fit_centerbias",
    "fit_gold_standard",
    "information_gain",
    "kfold_assignments",
    "list_models",
    "load",
    "load_image",
    "load_recipe",
    "log_likelihood",
    "sample_fixations",
    "select_members",
    "stack_members",
    "write_report",
]
