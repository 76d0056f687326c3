"""The recipe's ``trainer:`` section and `make_trainer`, the one way a `lightning.Trainer` is built.

Training, the feature-cache build, the tests and the benchmarks all get their Trainer here, so the
settings every run of this package needs are stated once:

* ``use_distributed_sampler=False``: `SizeBucketBatchSampler` splits batches over ranks itself;
* ``num_sanity_val_steps=0``: validation only at the end of each epoch (best-epoch bookkeeping);
* ``enable_model_summary=False``;
* everything else from the `TrainerConfig`: accelerator, devices, nodes, strategy, precision,
  gradient accumulation and clipping, determinism, logging interval, loggers and callbacks.

A recipe's trainer section, e.g.::

    trainer:
      precision: bf16-mixed
      accumulate_grad_batches: 2
      gradient_clip_val: 1.0
      loggers: [{type: csv}, {type: tensorboard}]       # default: [{type: csv}]
      callbacks:
        - {class_path: EarlyStopping, init_args: {monitor: val/ll, mode: max, patience: 5}}
        - {class_path: LearningRateMonitor}
        - {class_path: my_package.callbacks.MyCallback, init_args: {every: 10}}

A callback is a Lightning class by name (``lightning.pytorch.callbacks``) or any
``package.module.Class`` that subclasses ``lightning.pytorch.Callback``; that module is imported
when the recipe is read, so a recipe runs code from the packages it names (as any Python
configuration would). Loggers: ``csv`` (no extra package), ``tensorboard`` (needs ``tensorboard``
or ``tensorboardX``) and ``wandb`` (needs ``wandb``); ``args`` are further keyword arguments of
the logger class. Every class, package and argument is checked when the recipe is read, before
anything is computed; a problem is a `ConfigError` naming the field and what to do.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

from ..errors import ConfigError
from ..io.progress import progress_wanted
from ..io.typed import bounded, validate

#: Lightning precisions a recipe may ask for.
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "64")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
#: Where a callback named without a module is looked up.
LIGHTNING_CALLBACKS = "lightning.pytorch.callbacks"
#: Logger type -> (Lightning class, import names of which one must be installed, what to pip install).
LOGGERS: dict[str, tuple[type[Logger], tuple[str, ...], str]] = {
    "csv": (CSVLogger, (), ""),
    "tensorboard": (TensorBoardLogger, ("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (WandbLogger, ("wandb",), "wandb"),
}
_CLASS_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass
class LoggerConfig:
    """One Lightning logger of a training run; it writes under the stage's folder."""

    type: Literal["csv", "tensorboard", "wandb"] = "csv"
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class CallbackConfig:
    """A Lightning callback: ``class_path`` is a class of ``lightning.pytorch.callbacks`` by name
    (``"EarlyStopping"``) or ``"package.module.Class"``; ``init_args`` its keyword arguments."""

    class_path: str = bounded(min_len=1, max_len=300)
    init_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class TrainerConfig:
    """The arguments of `lightning.Trainer` a recipe may set (see the module docstring)."""

    accelerator: str = bounded("auto", choices=ACCELERATORS, help="Lightning accelerator")
    devices: int | str = 1
    num_nodes: int = bounded(1, ge=1, le=10_000)
    strategy: str = "auto"
    precision: str = bounded("32-true", choices=PRECISIONS, help="Lightning precision of the readout training")
    accumulate_grad_batches: int = bounded(1, ge=1, le=10_000, help="batches whose gradients are summed per optimiser step")
    gradient_clip_val: float | None = bounded(None, gt=0, help="clip gradients at this value (None: no clipping)")
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    deterministic: bool | Literal["warn"] = True
    benchmark: bool | None = None
    log_every_n_steps: int = bounded(1, ge=1, le=1_000_000, help="training steps between two logged values")
    num_workers: int = bounded(0, ge=0, le=256, help="data loader worker processes")
    loggers: list[LoggerConfig] = bounded(default_factory=lambda: [LoggerConfig()], max_len=10)
    callbacks: list[CallbackConfig] = bounded(default_factory=list, max_len=100)

    def __post_init__(self) -> None:
        validate(self)


# -- checking (when a recipe is read) ---------------------------------------------------------------
def check_trainer_config(config: TrainerConfig, where: str) -> None:
    """Raise `ConfigError` unless every logger's package is installed, every callback class can be
    imported and is a Lightning callback, and every ``args``/``init_args`` fits its class."""
    for i, logger in enumerate(config.loggers):
        at = f"{where}: trainer.loggers.{i}"
        cls, packages, pip_name = LOGGERS[logger.type]
        if packages and not any(importlib.util.find_spec(name) for name in packages):
            raise ConfigError(f"{at}: the {logger.type} logger needs the package {pip_name}: pip install {pip_name}")
        _check_arguments(cls, logger.args, f"{at}.args", fixed=("save_dir",))
    for i, callback in enumerate(config.callbacks):
        at = f"{where}: trainer.callbacks.{i}"
        _check_arguments(callback_class(callback.class_path, at), callback.init_args, f"{at}.init_args")


def callback_class(class_path: str, where: str) -> type[Callback]:
    """The callback class ``class_path`` names (a bare name is looked up in `LIGHTNING_CALLBACKS`)."""
    if not _CLASS_PATH.fullmatch(class_path):
        raise ConfigError(f"{where}.class_path must be a class name or package.module.Class, got {class_path!r}")
    module_name, _, class_name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name or LIGHTNING_CALLBACKS)
    except ImportError as error:
        raise ConfigError(f"{where}.class_path {class_path!r}: cannot import {module_name} ({error}); install the package that provides it") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Callback)):
        hint = f" (Lightning's callbacks: {', '.join(_lightning_callbacks())})" if not module_name else ""
        raise ConfigError(f"{where}.class_path {class_path!r} is not a lightning.pytorch.Callback class{hint}")
    return cls


def _lightning_callbacks() -> list[str]:
    module = importlib.import_module(LIGHTNING_CALLBACKS)
    return sorted(name for name in getattr(module, "__all__", []) if isinstance(getattr(module, name, None), type))


def _check_arguments(cls: type, arguments: dict[str, Any], where: str, fixed: tuple[str, ...] = ()) -> None:
    taken = sorted(set(arguments) & set(fixed))
    if taken:
        raise ConfigError(f"{where}: {', '.join(taken)} is set by deepgaze-hub (the run's folder); remove it")
    try:
        inspect.signature(cls).bind(**{name: "." for name in fixed}, **arguments)
    except TypeError as error:
        raise ConfigError(f"{where}: {error} for {cls.__name__}{inspect.signature(cls)}") from None


# -- building ---------------------------------------------------------------------------------------
def make_loggers(configs: list[LoggerConfig], save_dir: str | Path) -> list[Logger]:
    """The loggers of ``configs``, writing under ``save_dir`` (CSV and TensorBoard into
    ``logs/version_0`` and ``tensorboard/version_0``, so that a resumed run appends to them)."""
    defaults = {"csv": {"name": "logs", "version": 0}, "tensorboard": {"name": "tensorboard", "version": 0}, "wandb": {}}
    return [LOGGERS[c.type][0](save_dir=str(save_dir), **{**defaults[c.type], **c.args}) for c in configs]


def make_callbacks(configs: list[CallbackConfig]) -> list[Callback]:
    """The callbacks of ``configs``, instantiated (`ConfigError` if one refuses its arguments)."""
    callbacks = []
    for i, config in enumerate(configs):
        at = f"trainer.callbacks.{i}"
        cls = callback_class(config.class_path, at)
        try:
            callbacks.append(cls(**config.init_args))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{at}: {config.class_path}({config.init_args}) failed: {error}") from None
    return callbacks


def trainer_settings(config: TrainerConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of `lightning.Trainer` for ``config``, with ``overrides`` applied last
    (loggers and callbacks are not among them: see `make_trainer`)."""
    config = config or TrainerConfig()
    settings: dict[str, Any] = dict(
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,
        accumulate_grad_batches=config.accumulate_grad_batches,
        gradient_clip_val=config.gradient_clip_val,
        gradient_clip_algorithm=config.gradient_clip_algorithm,
        deterministic=config.deterministic,
        benchmark=config.benchmark,
        log_every_n_steps=config.log_every_n_steps,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=progress_wanted(),  # on stderr, only when it is a terminal
        logger=False,
    )
    settings.update(overrides)
    return settings


def make_trainer(config: TrainerConfig | None = None, *, run_dir: str | Path | None = None, **overrides: Any) -> L.Trainer:
    """A `lightning.Trainer` for ``config`` (default `TrainerConfig()`).

    ``run_dir``: the folder of a training run: the config's loggers write under it, the config's
    callbacks follow ``overrides["callbacks"]``, and it is the Trainer's ``default_root_dir``.
    Without it (feature-cache build, tests) there is no logger and only the callbacks given.
    ``overrides`` are further Trainer arguments (``max_epochs``, ``callbacks``, ...).
    """
    config = config or TrainerConfig()
    _silence_lightning_notices()
    if run_dir is not None:
        overrides = {
            "default_root_dir": run_dir,
            "logger": make_loggers(config.loggers, run_dir) or False,
            **overrides,
            "callbacks": [*overrides.get("callbacks", []), *make_callbacks(config.callbacks)],
        }
    return L.Trainer(**trainer_settings(config, **overrides))


class _DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


_LITLOGGER_FILTER = _DropLitLoggerTip()


def _silence_lightning_notices() -> None:
    """Drop two notices Lightning prints on every run that are not about the user's run.

    Lightning 2.6 logs a tip advertising its ``litlogger`` service whenever a Trainer has no
    LitLogger, and its ``CombinedLoader`` builds a ``torch.utils._pytree.LeafSpec``, which recent torch
    versions (2.14 here) deprecate with a FutureWarning. Neither is caused by our settings; both filters match
    only those messages.
    """
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _LITLOGGER_FILTER not in logger.filters:
            logger.addFilter(_LITLOGGER_FILTER)
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree"
    )
