"""Training DeepGaze readouts with Lightning: recipes, data module, feature cache, k-fold ensembles."""

from .batching import SizeBucketBatchSampler
from .datamodule import FixationDataModule
from .feature_cache import FeatureCache, StaleCacheError, build_feature_cache
from .module import DeepGazeModule
from .recipe import Recipe, RecipeError, load_recipe
from .runner import RecipeRun

__all__ = [
    "DeepGazeModule",
    "FeatureCache",
    "FixationDataModule",
    "Recipe",
    "RecipeError",
    "RecipeRun",
    "SizeBucketBatchSampler",
    "StaleCacheError",
    "build_feature_cache",
    "load_recipe",
]
