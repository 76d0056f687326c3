"""Training DeepGaze readouts with Lightning: recipes, data module, feature cache, k-fold ensembles."""

from .batch import TrainingBatch
from .batching import SizeBucketBatchSampler
from .datamodule import FixationDataModule
from .feature_build import build_feature_cache
from .feature_cache import FeatureCache
from .module import DeepGazeModule
from .recipe import Recipe, load_recipe
from .runner import RecipeRun
from .trainer import CallbackConfig, LoggerConfig, TrainerConfig, make_trainer

__all__ = [
    "CallbackConfig",
    "DeepGazeModule",
    "FeatureCache",
    "FixationDataModule",
    "LoggerConfig",
    "Recipe",
    "RecipeRun",
    "SizeBucketBatchSampler",
    "TrainerConfig",
    "TrainingBatch",
    "build_feature_cache",
    "load_recipe",
    "make_trainer",
]
