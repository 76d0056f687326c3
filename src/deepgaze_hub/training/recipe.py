"""Training recipes: the paper's protocol (or yours) as a YAML file, validated into dataclasses.

A recipe names datasets, then runs stages in order. A stage either trains one readout with a
separate validation (stopping) set, e.g. SALICON pretraining with MIT1003 as stopping set, or
trains a k-fold cross-validated ensemble on one dataset: member k validates on fold k and trains
on the others, every member starting from an earlier stage's readout. Example::

    name: my-recipe
    seed: 0
    data:                       # name -> HDF5 dataset file (relative to the working directory)
      salicon: salicon-train.h5 #   or "embedded" for the small synthetic dataset that ships
      mit1003: mit1003.h5
    model:                      # DeepGazeConfig fields (num_members is set by the stages)
      backbone: {name: vgg19, weights: IMAGENET1K_V1}
    stages:
      - {name: pretrain, train: salicon, val: mit1003, epochs: 20}
      - {name: finetune, train: mit1003, folds: 10, init: pretrain, epochs: 15}

The ``trainer:`` section is the `lightning.Trainer`'s settings, loggers and callbacks (see
`deepgaze_hub.training.trainer`). Every field of `StageConfig`, `FeatureCacheConfig` and `TrainerConfig` can be set in YAML or
overridden on the command line with dotted paths: ``--set stages.1.epochs=5 data.mit1003=/d/m.h5``.
Files and overrides go through `deepgaze_hub.io.typed`: a value of the wrong type or out of bounds
(``epochs: abc``, ``folds: 1``, ``optimizer.lr: 0``) is a `ConfigError` naming the file, the field
and what is allowed, raised before anything is built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..hub.registry import default_directory
from ..io.typed import bounded, override, parse, read_yaml, to_dict, validate
from ..model.config import DeepGazeConfig
from .trainer import TrainerConfig, check_trainer_config

AVERAGING = ("image", "fixation")
#: Trainer settings that do not change the trained model: a run may resume with other values.
NOT_IN_FINGERPRINT = ("loggers", "log_every_n_steps", "num_workers")
#: Feature cache storage types and HDF5 compressions a recipe may ask for.
CACHE_DTYPES = ("float16", "float32")
CACHE_COMPRESSIONS = ("lzf", "gzip")


@dataclass
class OptimizerConfig:
    """Adam with step decay (the reference: lr 1e-3, x0.1 at milestones, counted in epochs)."""

    lr: float = bounded(1e-3, gt=0, le=10, help="Adam learning rate")
    milestones: list[int] = bounded(default_factory=lambda: [10, 20], item_ge=1, max_len=1000, help="epochs at which lr is multiplied by gamma")
    gamma: float = bounded(0.1, gt=0, le=1, help="learning-rate factor at each milestone")
    weight_decay: float = bounded(0.0, ge=0, help="Adam weight decay")
    l1: float = bounded(0.0, ge=0, help="weight of the L1 penalty on readout weights (the paper's regulariser)")

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class StageConfig:
    """One training stage.

    Attributes:
        name: unique name; later stages refer to it with ``init``.
        train: dataset name (key of ``Recipe.data``) to train on.
        val: dataset name used as validation / stopping set (stages without ``folds``).
        folds: k > 1 makes a k-fold cross-validated ensemble of k members on ``train``.
        fold_seed: seed of the image-wise fold assignment.
        joint: train all k members in one pass over the data (fold masks per member) instead of
            one run per fold. Same result, one data pass per epoch instead of k.
        init: name of an earlier stage whose (best) readout every member starts from.
        epochs: number of epochs; the best epoch by validation log-likelihood is kept per member.
        batch_size: images per optimisation step (over all devices).
        averaging: the loss averages bits per fixation over ``"image"`` (mean of per-image means)
            or over all ``"fixation"``s.
        fit_centerbias: fit the centre bias on ``train`` and install it in the model first.
    """

    name: str = bounded(min_len=1, max_len=100)
    train: str = bounded(min_len=1)
    val: str | None = None
    folds: int | None = bounded(None, ge=2, le=1000)
    fold_seed: int = bounded(0, ge=0)
    joint: bool = True
    init: str | None = None
    epochs: int = bounded(20, ge=1, le=100_000)
    batch_size: int = bounded(8, ge=1, le=4096)
    averaging: str = bounded("image", choices=AVERAGING)
    fit_centerbias: bool = True
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def num_members(self) -> int:
        return self.folds or 1


@dataclass
class FeatureCacheConfig:
    """Cache the frozen backbone's features once (see `deepgaze_hub.training.feature_cache`)."""

    enabled: bool = True
    dir: str | None = None  # default: <run dir>/features
    dtype: str = bounded("float16", choices=CACHE_DTYPES)
    compression: str = bounded("lzf", choices=CACHE_COMPRESSIONS)
    batch_size: int = bounded(4, ge=1, le=1024)

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class Recipe:
    name: str = bounded(min_len=1, max_len=200)
    data: dict[str, str] = bounded(min_len=1)
    stages: list[StageConfig] = bounded(min_len=1, max_len=100)
    model: dict[str, Any] = field(default_factory=dict)
    seed: int = bounded(0, ge=0)
    feature_cache: FeatureCacheConfig = field(default_factory=FeatureCacheConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def model_config(self, num_members: int) -> DeepGazeConfig:
        values = dict(self.model)
        values["num_members"] = num_members
        try:
            config = DeepGazeConfig.from_dict(values)
        except ConfigError as error:
            raise ConfigError(f"recipe {self.name}: model: {error}") from error
        if config.pathways:
            raise ConfigError(
                f"recipe {self.name}: model: pathways: training supports models with one backbone (model.backbone "
                f"with its readouts; the stages set num_members); this recipe has {len(config.pathways) + 1}. "
                "Remove model.pathways. Models with several backbones (e.g. DeepGaze IIE) can be converted, "
                "used for prediction and evaluated, not trained yet"
            )
        return config

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ConfigError(f"recipe {self.name} has no stage {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def fingerprint(self) -> str:
        """Canonical JSON of everything that determines the result (for resume checks): all but
        the trainer's loggers, logging interval and data-loader workers."""
        data = self.to_dict()
        for name in NOT_IN_FINGERPRINT:
            data["trainer"].pop(name)
        return json.dumps(data, sort_keys=True)


def shipped_recipes() -> dict[str, Path]:
    """The recipes that come with deepgaze-hub (``hub_configs/recipes/``), by name."""
    return {path.stem: path for path in sorted((default_directory() / "recipes").glob("*.yaml"))}


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe, apply ``key.sub=value`` overrides (values parsed as YAML), validate.

    ``path`` is a YAML file, or the name of a recipe that ships with deepgaze-hub
    (`shipped_recipes`, e.g. ``"deepgaze2-vgg19"``). Raises `ConfigError` naming the file and
    the field for anything malformed.
    """
    path = Path(path)
    if not path.exists() and str(path) in shipped_recipes():
        path = shipped_recipes()[str(path)]
    elif not path.exists():
        raise ConfigError(f"no recipe file {path}, and no shipped recipe of that name (shipped: {sorted(shipped_recipes())})")
    raw = read_yaml(path, "recipe")
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path} is not a YAML mapping")
    raw.setdefault("name", path.stem)
    for item in overrides or []:
        override(raw, item)
    return recipe_from_dict(raw, where=f"recipe {path}" + (" with --set " + " ".join(overrides) if overrides else ""))


def recipe_from_dict(raw: dict[str, Any], where: str = "recipe") -> Recipe:
    """The checked `Recipe` of plain data (types, bounds, and how stages refer to data and each other)."""
    recipe = parse(Recipe, raw, where)
    check_references(recipe, where)
    check_trainer_config(recipe.trainer, where)
    return recipe


def check_references(recipe: Recipe, where: str) -> None:
    """Stage names unique, datasets named in ``data``, ``init`` earlier, folds without ``val``."""
    seen: set[str] = set()
    for stage in recipe.stages:
        at = f"{where}: stage {stage.name!r}"
        if stage.name in seen:
            raise ConfigError(f"{at}: duplicate stage name")
        for role in ("train", "val"):
            name = getattr(stage, role)
            if name is not None and name not in recipe.data:
                raise ConfigError(f"{at}: {role} dataset {name!r} is not in data ({sorted(recipe.data)})")
        if stage.folds and stage.val:
            raise ConfigError(f"{at}: a k-fold stage validates on its own folds; remove val")
        if stage.init is not None and stage.init not in seen:
            raise ConfigError(f"{at}: init {stage.init!r} must name an earlier stage")
        seen.add(stage.name)
    recipe.model_config(1)  # the model section must parse
