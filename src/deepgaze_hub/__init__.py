"""deepgaze-hub: DeepGaze saliency prediction as a library, a model hub and a training recipe.

Conventions everywhere: log densities are natural logarithms (nats) per pixel, shaped (B, H, W) or
(H, W) and summing to 1 after ``exp``; information gains are in bits per fixation; pixel
coordinates are floats with x = column and y = row, and a fixation at (x, y) falls in pixel
``[int(y), int(x)]``. Images for ``DeepGaze.forward`` are (B, 3, H, W) floats in [0, 255];
``DeepGaze.predict`` accepts anything (see `deepgaze_hub.io.images`).

The package's layers, each importing only from the ones before it (docs/architecture.md):
``errors``/``io`` -> ``model``, ``data`` -> ``hub``, ``baselines``, ``visualization`` ->
``evaluation`` -> ``training`` -> ``service``, ``cli``.

The public names below are imported on first use, so ``import deepgaze_hub`` (and the command
line's ``--help``) does not pay for torch, Lightning or FastAPI until they are needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr
from .errors import (
    ConfigError,
    DatasetError,
    DeepGazeError,
    EvaluationError,
    ImageError,
    ModelNotPublishedError,
    PublishError,
    TrainingError,
    WeightsError,
)
from .version import __version__

#: public name -> module that defines it
_LAZY = {
    "DeepGaze": "deepgaze_hub.model",
    "DeepGazeConfig": "deepgaze_hub.model",
    "BackboneConfig": "deepgaze_hub.model",
    "PathwayConfig": "deepgaze_hub.model",
    "FeatureExtractor": "deepgaze_hub.model",
    "load": "deepgaze_hub.hub",
    "list_models": "deepgaze_hub.hub",
    "ModelCardInfo": "deepgaze_hub.model",
    "load_image": "deepgaze_hub.io.images",
    "pixels_per_degree": "deepgaze_hub.io.scale",
    "FixationDataset": "deepgaze_hub.data",
    "Fixations": "deepgaze_hub.data",
    "default_dataset": "deepgaze_hub.data",
    "kfold_assignments": "deepgaze_hub.data",
    "sample_fixations": "deepgaze_hub.data.sampling",
    "CenterBiasModel": "deepgaze_hub.baselines",
    "GoldStandardModel": "deepgaze_hub.baselines",
    "fit_centerbias": "deepgaze_hub.baselines",
    "fit_gold_standard": "deepgaze_hub.baselines",
    "density_overlay": "deepgaze_hub.visualization",
    "EvaluationReport": "deepgaze_hub.evaluation",
    "ExplainedInformationGain": "deepgaze_hub.evaluation",
    "MetricResult": "deepgaze_hub.evaluation",
    "evaluate_log_densities": "deepgaze_hub.evaluation",
    "evaluate_model": "deepgaze_hub.evaluation",
    "explained_information_gain": "deepgaze_hub.evaluation",
    "information_gain": "deepgaze_hub.evaluation",
    "log_likelihood": "deepgaze_hub.evaluation",
    "write_report": "deepgaze_hub.evaluation",
    "DeepGazeModule": "deepgaze_hub.training",
    "FixationDataModule": "deepgaze_hub.training",
    "load_recipe": "deepgaze_hub.training",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from .baselines import CenterBiasModel, GoldStandardModel, fit_centerbias, fit_gold_standard
    from .data import FixationDataset, Fixations, default_dataset, kfold_assignments
    from .data.sampling import sample_fixations
    from .evaluation import (
        EvaluationReport,
        ExplainedInformationGain,
        MetricResult,
        evaluate_log_densities,
        evaluate_model,
        explained_information_gain,
        information_gain,
        log_likelihood,
        write_report,
    )
    from .hub import list_models, load
    from .model import ModelCardInfo
    from .io.images import load_image
    from .io.scale import pixels_per_degree
    from .model import BackboneConfig, DeepGaze, DeepGazeConfig, FeatureExtractor, PathwayConfig
    from .training import DeepGazeModule, FixationDataModule, load_recipe
    from .visualization import density_overlay

__all__ = sorted(
    [
        "ConfigError",
        "DatasetError",
        "DeepGazeError",
        "EvaluationError",
        "ImageError",
        "ModelNotPublishedError",
        "PublishError",
        "TrainingError",
        "WeightsError",
        "__version__",
        *_LAZY,
    ]
)
