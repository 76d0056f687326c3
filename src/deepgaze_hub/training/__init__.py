"""Training DeepGaze readouts with Lightning: recipes, data module, feature cache, k-fold ensembles.

The names below load their module on first use, so reading a feature cache
(`deepgaze_hub.training.feature_cache`) does not import Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

#: Public name -> the module of this package that defines it.
_EXPORTS = {
    "CallbackConfig": ".trainer",
    "DeepGazeModule": ".module",
    "FeatureCache": ".feature_cache",
    "FixationDataModule": ".datamodule",
    "LoggerConfig": ".trainer",
    "Recipe": ".recipe",
    "RecipeRun": ".runner",
    "SizeBucketBatchSampler": ".batching",
    "TrainerConfig": ".trainer",
    "TrainingBatch": ".batch",
    "build_feature_cache": ".feature_build",
    "load_recipe": ".recipe",
    "make_trainer": ".trainer",
    "open_feature_cache": ".feature_cache",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs
    from .batch import TrainingBatch
    from .batching import SizeBucketBatchSampler
    from .datamodule import FixationDataModule
    from .feature_build import build_feature_cache
    from .feature_cache import FeatureCache, open_feature_cache
    from .module import DeepGazeModule
    from .recipe import Recipe, load_recipe
    from .runner import RecipeRun
    from .trainer import CallbackConfig, LoggerConfig, TrainerConfig, make_trainer
