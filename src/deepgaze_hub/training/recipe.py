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

Every field of `StageConfig`, `FeatureCacheConfig` and `TrainerConfig` can be set in YAML or
overridden on the command line with dotted paths: ``--set stages.1.epochs=5 data.mit1003=/d/m.h5``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import DeepGazeError
from ..model.config import ConfigError, DeepGazeConfig

AVERAGING = ("image", "fixation")


class RecipeError(DeepGazeError, ValueError):
    """A recipe that cannot run; the message names the field."""


@dataclass
class OptimizerConfig:
    """Adam with step decay (the reference: lr 1e-3, x0.1 at milestones, counted in epochs)."""

    lr: float = 1e-3
    milestones: list[int] = field(default_factory=lambda: [10, 20])
    gamma: float = 0.1
    weight_decay: float = 0.0
    l1: float = 0.0  # weight of the L1 penalty on readout weights (the paper's regulariser)


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

    name: str
    train: str
    val: str | None = None
    folds: int | None = None
    fold_seed: int = 0
    joint: bool = True
    init: str | None = None
    epochs: int = 20
    batch_size: int = 8
    averaging: str = "image"
    fit_centerbias: bool = True
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)

    @property
    def num_members(self) -> int:
        return self.folds or 1


@dataclass
class FeatureCacheConfig:
    """Cache the frozen backbone's features once (see `deepgaze_hub.training.feature_cache`)."""

    enabled: bool = True
    dir: str | None = None  # default: <run dir>/features
    dtype: str = "float16"
    compression: str = "lzf"
    batch_size: int = 4


@dataclass
class TrainerConfig:
    """Passed to `lightning.Trainer`: devices, nodes, strategy, precision, workers."""

    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_workers: int = 0
    deterministic: bool = True


@dataclass
class Recipe:
    name: str
    data: dict[str, str]
    stages: list[StageConfig]
    model: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    feature_cache: FeatureCacheConfig = field(default_factory=FeatureCacheConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def model_config(self, num_members: int) -> DeepGazeConfig:
        values = dict(self.model)
        values["num_members"] = num_members
        try:
            return DeepGazeConfig.from_dict(values)
        except ConfigError as error:
            raise RecipeError(f"recipe {self.name}: model: {error}") from error

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise RecipeError(f"recipe {self.name} has no stage {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Canonical JSON of everything that determines the result (for resume checks)."""
        return json.dumps(self.to_dict(), sort_keys=True)


def shipped_recipes() -> dict[str, Path]:
    """The recipes that come with deepgaze-hub (``hub_configs/recipes/``), by name."""
    from ..hub.registry import default_directory

    return {path.stem: path for path in sorted((default_directory() / "recipes").glob("*.yaml"))}


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe, apply ``key.sub=value`` overrides (values parsed as YAML), validate.

    ``path`` is a YAML file, or the name of a recipe that ships with deepgaze-hub
    (`shipped_recipes`, e.g. ``"deepgaze2-vgg19"``).
    """
    path = Path(path)
    if not path.exists() and str(path) in shipped_recipes():
        path = shipped_recipes()[str(path)]
    elif not path.exists():
        raise RecipeError(f"no recipe file {path}, and no shipped recipe of that name (shipped: {sorted(shipped_recipes())})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise RecipeError(f"cannot read recipe {path}: {error}") from error
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {path} is not a YAML mapping")
    for item in overrides or []:
        apply_override(raw, item)
    return recipe_from_dict(raw, where=str(path))


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``a.b.0.c=value`` in a nested dict/list structure; list indices are integers."""
    if "=" not in item:
        raise RecipeError(f"override {item!r} must look like key.path=value")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    target: Any = raw
    for i, part in enumerate(parts[:-1]):
        try:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        except (IndexError, ValueError, AttributeError):
            raise RecipeError(f"override {item!r}: no {'.'.join(parts[: i + 1])} in the recipe") from None
    last = parts[-1]
    value = yaml.safe_load(text) if text.strip() else None
    if isinstance(target, list):
        try:
            target[int(last)] = value
        except (IndexError, ValueError):
            raise RecipeError(f"override {item!r}: no index {last}") from None
    elif isinstance(target, dict):
        target[last] = value
    else:
        raise RecipeError(f"override {item!r}: {'.'.join(parts[:-1])} is not a mapping")


def recipe_from_dict(raw: dict[str, Any], where: str = "recipe") -> Recipe:
    raw = dict(raw)
    try:
        stages = [_build(StageConfig, s, f"{where}: stages[{i}]") for i, s in enumerate(raw.pop("stages", None) or [])]
        recipe = Recipe(
            name=raw.pop("name", Path(where).stem),
            data=dict(raw.pop("data", None) or {}),
            stages=stages,
            model=dict(raw.pop("model", None) or {}),
            seed=int(raw.pop("seed", 0)),
            feature_cache=_build(FeatureCacheConfig, raw.pop("feature_cache", None) or {}, f"{where}: feature_cache"),
            trainer=_build(TrainerConfig, raw.pop("trainer", None) or {}, f"{where}: trainer"),
        )
    except TypeError as error:
        raise RecipeError(f"{where}: {error}") from error
    if raw:
        raise RecipeError(f"{where}: unknown top-level keys {sorted(raw)}")
    validate(recipe, where)
    return recipe


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise RecipeError(f"{where} must be a mapping")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise RecipeError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    values = dict(values)
    if cls is StageConfig and "optimizer" in values:
        values["optimizer"] = _build(OptimizerConfig, values["optimizer"] or {}, f"{where}.optimizer")
    return cls(**values)


def validate(recipe: Recipe, where: str) -> None:
    if not recipe.stages:
        raise RecipeError(f"{where}: no stages")
    seen: set[str] = set()
    for stage in recipe.stages:
        at = f"{where}: stage {stage.name!r}"
        if stage.name in seen:
            raise RecipeError(f"{at}: duplicate stage name")
        for role in ("train", "val"):
            name = getattr(stage, role)
            if name is not None and name not in recipe.data:
                raise RecipeError(f"{at}: {role} dataset {name!r} is not in data ({sorted(recipe.data)})")
        if stage.folds is not None and stage.folds < 2:
            raise RecipeError(f"{at}: folds must be >= 2 (or absent)")
        if stage.folds and stage.val:
            raise RecipeError(f"{at}: a k-fold stage validates on its own folds; remove val")
        if stage.init is not None and stage.init not in seen:
            raise RecipeError(f"{at}: init {stage.init!r} must name an earlier stage")
        if stage.averaging not in AVERAGING:
            raise RecipeError(f"{at}: averaging must be one of {AVERAGING}")
        if stage.epochs < 1 or stage.batch_size < 1:
            raise RecipeError(f"{at}: epochs and batch_size must be >= 1")
        seen.add(stage.name)
    recipe.model_config(1)  # the model section must parse
