"""The recipe's trainer section: Trainer arguments, loggers and callbacks, checked and passed through."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import Callback

from deepgaze_hub.errors import ConfigError
from deepgaze_hub.training import RecipeRun, load_recipe, make_trainer
from deepgaze_hub.training.recipe import recipe_from_dict
from deepgaze_hub.training.trainer import TrainerConfig

SQUEEZE = {"name": "squeezenet1_1", "weights": None, "layers": ["features.9", "features.12"]}
EPOCHS = 3


class Recorder(Callback):
    """A user callback named by import path in a recipe: records what the Trainer was given."""

    seen: list[dict] = []

    def __init__(self, tag: str = "") -> None:
        self.tag = tag

    def on_train_end(self, trainer, module) -> None:
        Recorder.seen.append(
            {
                "tag": self.tag,
                "precision": trainer.precision,
                "accumulate": trainer.accumulate_grad_batches,
                "clip": trainer.gradient_clip_val,
                "steps": trainer.global_step,
                "batches": trainer.num_training_batches,
                "epochs": trainer.current_epoch,
                "loggers": [type(logger).__name__ for logger in trainer.loggers],
                "callbacks": [type(callback).__name__ for callback in trainer.callbacks],
            }
        )


def recipe_data(dataset: Path, **trainer) -> dict:
    return {
        "name": "trainer-options",
        "data": {"synthetic": str(dataset)},
        "model": {"backbone": SQUEEZE},
        "trainer": {"accelerator": "cpu", **trainer},
        "stages": [{"name": "fit", "train": "synthetic", "folds": 2, "epochs": EPOCHS, "batch_size": 4, "optimizer": {"lr": 0.02}}],
    }


def test_a_recipe_with_precision_accumulation_callbacks_and_csv_logger_runs(synthetic_dataset, tmp_path, caplog, recwarn, one_thread):
    trainer = {
        "precision": "bf16-mixed",
        "accumulate_grad_batches": 2,
        "gradient_clip_val": 0.5,
        "loggers": [{"type": "csv"}],
        "callbacks": [
            {"class_path": "EarlyStopping", "init_args": {"monitor": "val/ll", "mode": "max", "patience": 10}},
            {"class_path": "LearningRateMonitor", "init_args": {"logging_interval": "epoch"}},
            {"class_path": f"{__name__}.Recorder", "init_args": {"tag": "from-recipe"}},
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_data(Path(synthetic_dataset.path), **trainer)))
    recipe = load_recipe(path)
    Recorder.seen.clear()
    with caplog.at_level(logging.INFO):
        out = RecipeRun(recipe, tmp_path / "run", log=lambda message: None).run()
    assert (out / "model.safetensors").exists()
    (seen,) = Recorder.seen
    assert seen["tag"] == "from-recipe" and seen["precision"] == "bf16-mixed"
    assert (seen["accumulate"], seen["clip"]) == (2, 0.5)
    assert seen["steps"] == EPOCHS * math.ceil(seen["batches"] / 2)  # one optimiser step per two batches
    assert seen["loggers"] == ["CSVLogger"]
    assert {"ModelCheckpoint", "EarlyStopping", "LearningRateMonitor", "Recorder"} <= set(seen["callbacks"])
    with open(tmp_path / "run" / "stages" / "fit" / "logs" / "version_0" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert "lr-Adam" in rows[0] and sum(1 for row in rows if row["val/ll"]) == EPOCHS
    # Lightning's litlogger advertisement and torch's LeafSpec deprecation are not shown
    assert "GPU available" in caplog.text and "litlogger" not in caplog.text
    assert not [w for w in recwarn if "LeafSpec" in str(w.message)]


def test_trainer_arguments_reach_lightning_without_a_run_dir(caplog):
    config = TrainerConfig(accelerator="cpu", precision="bf16-mixed", accumulate_grad_batches=3, log_every_n_steps=7, deterministic="warn")
    with caplog.at_level(logging.INFO):
        trainer = make_trainer(config, max_epochs=1, enable_progress_bar=False)
    assert (trainer.accumulate_grad_batches, trainer.log_every_n_steps, trainer.precision) == (3, 7, "bf16-mixed")
    assert trainer.loggers == []  # no logger (and no stray lightning_logs folder) unless a run asks for it
    assert "litlogger" not in caplog.text


@pytest.mark.parametrize(
    "trainer, message",
    [
        ({"callbacks": [{"class_path": "EarlyStoping"}]}, "'EarlyStoping' is not a lightning.pytorch.Callback class (Lightning's callbacks: "),
        ({"callbacks": [{"class_path": "no_such_package.callbacks.X"}]}, "cannot import no_such_package.callbacks"),
        ({"callbacks": [{"class_path": "collections.OrderedDict"}]}, "'collections.OrderedDict' is not a lightning.pytorch.Callback"),
        ({"callbacks": [{"class_path": "EarlyStopping", "init_args": {"patience": 3}}]}, "trainer.callbacks.0.init_args: missing a required argument: 'monitor'"),
        ({"callbacks": [{"class_path": "import os; os.system('x')"}]}, "must be a class name or package.module.Class"),
        ({"loggers": [{"type": "csv", "args": {"flush_every": 3}}]}, "trainer.loggers.0.args: got an unexpected keyword argument 'flush_every'"),
        ({"loggers": [{"type": "csv", "args": {"save_dir": "/elsewhere"}}]}, "save_dir is set by deepgaze-hub"),
        ({"loggers": [{"type": "mlflow"}]}, "trainer.loggers.0.type must be one of"),
        ({"precision": "8-true"}, "trainer.precision must be one of"),
        ({"accumulate_grad_batches": 0}, "trainer.accumulate_grad_batches must be >= 1"),
        ({"gradient_clip_val": -1}, "trainer.gradient_clip_val must be > 0"),
        ({"gradient_clip_algorithm": "max"}, "trainer.gradient_clip_algorithm must be one of"),
        ({"deterministic": "yes"}, "trainer.deterministic must be"),
        ({"max_epochs": 3}, "unknown field trainer.max_epochs"),
    ],
)
def test_bad_trainer_sections_are_refused_when_the_recipe_is_read(tmp_path, trainer, message):
    with pytest.raises(ConfigError) as caught:
        recipe_from_dict(recipe_data(tmp_path / "x.h5", **trainer), where="recipe r.yaml")
    assert str(caught.value).startswith("recipe r.yaml: ") and message in str(caught.value)


@pytest.mark.parametrize("kind, package", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_a_logger_whose_package_is_missing_names_the_package(tmp_path, monkeypatch, kind, package):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("tensorboard", "tensorboardX", "wandb") else real(name, *a))
    with pytest.raises(ConfigError, match=f"trainer.loggers.0: the {kind} logger needs the package {package}: pip install {package}"):
        recipe_from_dict(recipe_data(tmp_path / "x.h5", loggers=[{"type": kind}]))


def test_tensorboard_logger_when_installed(tmp_path):
    if not (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
        pytest.skip("tensorboard is not installed")
    recipe = recipe_from_dict(recipe_data(tmp_path / "x.h5", loggers=[{"type": "csv"}, {"type": "tensorboard"}]))
    trainer = make_trainer(recipe.trainer, run_dir=tmp_path, max_epochs=1, enable_progress_bar=False)
    assert [type(logger).__name__ for logger in trainer.loggers] == ["CSVLogger", "TensorBoardLogger"]


def test_logging_settings_do_not_block_a_resume_and_older_run_folders_still_match(tmp_path):
    data = recipe_data(tmp_path / "x.h5")
    base = recipe_from_dict(data)
    chatty = recipe_from_dict(recipe_data(tmp_path / "x.h5", loggers=[], log_every_n_steps=50, num_workers=2))
    assert chatty.fingerprint() == base.fingerprint()
    assert recipe_from_dict(recipe_data(tmp_path / "x.h5", accumulate_grad_batches=2)).fingerprint() != base.fingerprint()
    # a run folder written before the trainer section grew (only the first 7 trainer fields)
    run = tmp_path / "run"
    run.mkdir()
    stored = base.to_dict()
    stored["trainer"] = {key: stored["trainer"][key] for key in ("accelerator", "devices", "num_nodes", "strategy", "precision", "num_workers", "deterministic")}
    (run / "recipe.json").write_text(json.dumps(stored))
    RecipeRun(base, run)  # accepted: same recipe
    other = recipe_from_dict(recipe_data(tmp_path / "x.h5", precision="bf16-mixed"))
    with pytest.raises(ConfigError, match="holds a run of a different recipe"):
        RecipeRun(other, run)
