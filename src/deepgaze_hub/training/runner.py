"""Running a recipe: stages in order, resumable, ending in one saved ensemble.

Run directory layout::

    recipe.json                   the resolved recipe; a rerun must match it (or pass restart)
    centerbias/<dataset>.npy      fitted centre-bias templates
    features/                     feature caches (unless feature_cache.dir says otherwise)
    stages/<stage>/[fold-<k>/]    Lightning logs, checkpoints/last.ckpt, model/, result.json
    model/                        the final ensemble (save_pretrained) + crossval.json
    summary.md                    the table printed at the end

A stage (or fold) whose ``result.json`` exists is done and is not trained again; an unfinished
one resumes from its ``last.ckpt``. So a killed run continues where it stopped when the same
command is run again. A ``last.ckpt`` that cannot be read (truncated, damaged) stops the run with
a `TrainingError` naming the file: delete it to train that stage from its start, or pass
``--restart`` to start the whole run over (nothing is silently retrained).
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint

from ..baselines import fit_centerbias
from ..data import EMBEDDED, FixationDataset, open_dataset
from ..errors import ConfigError, TrainingError
from ..evaluation.crossval import CrossvalInfo
from ..evaluation.evaluate import evaluate_model
from ..evaluation.report import Column, EvaluationReport, Row
from ..io.atomic import atomic_save_npy, atomic_write_text
from ..io.progress import progress_wanted
from ..model.card import CardMetric, ModelCardInfo
from ..model.deepgaze import DeepGaze
from .datamodule import FixationDataModule
from .feature_build import build_feature_cache
from .feature_cache import FeatureCache, cache_directory
from .module import DeepGazeModule
from .recipe import Recipe, StageConfig, recipe_from_dict
from .trainer import make_trainer

RESULT_FILE = "result.json"
#: The card's cross-validated scores: (column, label on the card).
CARD_COLUMNS = ((Column.IG_VS_UNIFORM, "IG vs uniform"), (Column.IG_VS_CENTRE_BIAS, "IG vs centre bias"))


@dataclass
class StageResult:
    name: str
    members: int
    best_epoch: list[int]
    best_ll: list[float]  # validation log-likelihood, bits per fixation vs uniform
    seconds: float


class RecipeRun:
    """Runs ``recipe`` in ``run_dir``; `run` returns the directory of the saved ensemble."""

    def __init__(
        self, recipe: Recipe, run_dir: str | Path, *, restart: bool = False, log: Callable[[str], None] = print,
        progress: bool | None = None,
    ) -> None:
        """``progress``: Lightning's progress bar (None: only when stderr is a terminal)."""
        self.recipe = recipe
        self.progress = progress_wanted() if progress is None else progress
        self.run_dir = Path(run_dir)
        # with several processes (torchrun, DDP) only the first one talks
        self.log = log if rank_zero_only.rank == 0 else (lambda message: None)
        self._datasets: dict[str, FixationDataset] = {}
        self._backbone = None
        self._check_run_dir(restart)

    # -- setup ------------------------------------------------------------------------------------
    def _check_run_dir(self, restart: bool) -> None:
        path = self.run_dir / "recipe.json"
        if path.exists() and not restart:
            if _stored_fingerprint(path) != self.recipe.fingerprint():
                raise ConfigError(
                    f"{self.run_dir} holds a run of a different recipe (see {path}); use another --run-dir, "
                    "or --restart to discard that run"
                )
        elif path.exists() and restart:
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.recipe.to_dict(), indent=2, sort_keys=True) + "\n")

    def dataset(self, name: str) -> FixationDataset:
        """The recipe's dataset ``name`` (`open_dataset`: its file, or the embedded one), opened once."""
        if name not in self._datasets:
            path = self.recipe.data[name]
            if path != EMBEDDED and not Path(path).exists():
                raise ConfigError(
                    f"dataset {name!r}: {path} does not exist; import your data with `deepgaze-hub data import ...` "
                    f"and pass its path with --set data.{name}=PATH"
                )
            self._datasets[name] = open_dataset(path)
        return self._datasets[name]

    def _new_model(self, members: int) -> DeepGaze:
        model = DeepGaze(self.recipe.model_config(members), backbone=self._backbone)
        self._backbone = model.backbone
        model.readout.reset_parameters(torch.Generator().manual_seed(self.recipe.seed))
        return model

    def _centerbias(self, dataset_name: str) -> np.ndarray:
        path = self.run_dir / "centerbias" / f"{dataset_name}.npy"
        if not path.exists():
            self.log(f"fitting the centre bias on {dataset_name}")
            shape = self.recipe.model_config(1).centerbias_shape
            atomic_save_npy(path, np.asarray(fit_centerbias(self.dataset(dataset_name)).template(tuple(shape)), dtype=np.float32))
        return np.load(path)

    def feature_cache(self, model: DeepGaze, dataset_name: str) -> FeatureCache | None:
        settings = self.recipe.feature_cache
        if not settings.enabled:
            return None
        root = Path(settings.dir) if settings.dir else self.run_dir / "features"
        cache = FeatureCache(cache_directory(root, model.config), model.config, settings.dtype)
        dataset = self.dataset(dataset_name)
        missing = len(cache.missing(dataset.image_ids))
        if missing:
            self.log(f"caching backbone features of {missing} images of {dataset_name} in {cache.directory}")
            build_feature_cache(
                model,
                dataset,
                cache,
                batch_size=settings.batch_size,
                compression=settings.compression,
                trainer=self.recipe.trainer,
                trainer_overrides={"enable_progress_bar": self.progress},
            )
        return cache

    # -- stages -----------------------------------------------------------------------------------
    def run(self) -> Path:
        results: dict[str, tuple[DeepGaze, StageResult]] = {}
        for stage in self.recipe.stages:
            results[stage.name] = self._run_stage(stage, results)
        final_stage = self.recipe.stages[-1]
        model, _ = results[final_stage.name]
        out = self.run_dir / "model"
        crossval = self._crossval(model, final_stage) if final_stage.folds else None
        model.card_info = self._card_info(crossval)
        if _is_global_zero():
            model.save_pretrained(out)
            if crossval is not None:
                atomic_write_text(out / "crossval.json", json.dumps(crossval.to_dict(), indent=2) + "\n")
            table = summary_table([r for _, r in results.values()], crossval)
            atomic_write_text(self.run_dir / "summary.md", table + "\n")
            self.log(table)
            self.log(f"saved the ensemble to {out}")
        return out

    def _card_info(self, crossval: EvaluationReport | None) -> ModelCardInfo:
        stages = ", ".join(
            f"{s.name} ({'%d-fold cross-validation on ' % s.folds if s.folds else ''}{s.train}"
            f"{', stopping set ' + s.val if s.val else ''}, {s.epochs} epochs)"
            for s in self.recipe.stages
        )
        final = self.recipe.stages[-1]
        evaluation = []
        if crossval is not None:
            split = f"held-out folds ({final.folds}-fold cross-validation)"
            centre_bias = crossval.settings.get("centre_bias")
            for column, label in CARD_COLUMNS:
                value = round(crossval.score(Row.MODEL, column), 4)
                against = centre_bias if column == Column.IG_VS_CENTRE_BIAS and centre_bias else None
                evaluation.append(CardMetric(final.train, label, value, split, "bits/fixation", centre_bias=against))
            fraction = crossval.truth_fraction
            if fraction is not None:
                evaluation.append(CardMetric(final.train, "IG / true IG", round(100 * fraction, 1), split, "%"))
        return ModelCardInfo(
            title=f"DeepGaze ensemble trained with recipe {self.recipe.name}",
            datasets=sorted({s.train for s in self.recipe.stages} | {s.val for s in self.recipe.stages if s.val}),
            recipe=f"recipes/{self.recipe.name}.yaml",
            training=f"Trained with deepgaze-hub, recipe `{self.recipe.name}` (seed {self.recipe.seed}): {stages}.",
            evaluation=evaluation,
            crossval=self.crossval_info(final).to_dict() if final.folds else None,
        )

    def _start_model(self, stage: StageConfig, results: dict, members: int) -> DeepGaze:
        if stage.init is None:
            model = self._new_model(members)
        else:
            previous, _ = results[stage.init]
            if previous.num_members == members:
                model = DeepGaze.stack([previous])
            elif previous.num_members == 1:
                model = previous.repeat_member(members)
            else:
                raise ConfigError(f"stage {stage.name}: cannot start {members} members from {previous.num_members}")
        if stage.fit_centerbias:
            model.set_centerbias(torch.from_numpy(self._centerbias(stage.train)))
        return model

    def _run_stage(self, stage: StageConfig, results: dict) -> tuple[DeepGaze, StageResult]:
        directory = self.run_dir / "stages" / stage.name
        if stage.folds and not stage.joint:
            parts = [
                self._run_unit(stage, directory / f"fold-{k}", results, members=1, fold=k) for k in range(stage.folds)
            ]
            model = DeepGaze.stack([m for m, _ in parts])
            result = StageResult(
                stage.name,
                stage.folds,
                [r.best_epoch[0] for _, r in parts],
                [r.best_ll[0] for _, r in parts],
                sum(r.seconds for _, r in parts),
            )
            return model, result
        return self._run_unit(stage, directory, results, members=stage.num_members, fold=None)

    def _run_unit(self, stage: StageConfig, directory: Path, results: dict, *, members: int, fold: int | None) -> tuple[DeepGaze, StageResult]:
        label = stage.name + (f" fold {fold}" if fold is not None else "")
        done = directory / RESULT_FILE
        if done.exists():
            self.log(f"{label}: already trained, skipping")
            model = DeepGaze.from_pretrained(directory / "model", backbone=self._backbone)
            self._backbone = model.backbone
            return model, StageResult(**json.loads(done.read_text()))
        started = time.perf_counter()
        model = self._start_model(stage, results, members)
        train = self.dataset(stage.train)
        val = self.dataset(stage.val) if stage.val else None
        datamodule = FixationDataModule(
            train,
            val_dataset=val,
            num_folds=stage.folds,
            fold=fold,
            fold_seed=stage.fold_seed,
            joint=stage.folds is not None and fold is None,
            batch_size=stage.batch_size,
            seed=self.recipe.seed,
            num_workers=self.recipe.trainer.num_workers,
            features=self.feature_cache(model, stage.train),
            val_features=self.feature_cache(model, stage.val) if stage.val else None,
        )
        module = DeepGazeModule(model, stage.optimizer, stage.averaging)
        last = directory / "checkpoints" / "last.ckpt"
        resume = last.exists()
        if resume:
            check_checkpoint(last)
        self.log(f"{label}: training {members} member(s) for {stage.epochs} epochs" + (" (resuming)" if resume else ""))
        trainer = make_trainer(
            self.recipe.trainer,
            run_dir=directory,  # the recipe's loggers write here; its callbacks follow ours
            max_epochs=stage.epochs,
            enable_progress_bar=self.progress,
            # one rolling checkpoint, rewritten (atomically) after every epoch: what a resume starts from
            callbacks=[ModelCheckpoint(dirpath=directory / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False)],
        )
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resume else None)
        best = module.best_model()
        result = StageResult(
            stage.name,
            members,
            module.best_epoch.tolist(),
            [float(v) for v in module.best_ll.tolist()],
            time.perf_counter() - started,
        )
        if trainer.is_global_zero:
            best.save_pretrained(directory / "model")
            atomic_write_text(done, json.dumps(asdict(result), indent=2) + "\n")
        trainer.strategy.barrier()
        return best, result

    # -- cross-validated evaluation ---------------------------------------------------------------
    def crossval_info(self, stage: StageConfig) -> CrossvalInfo:
        """Which member may score which image: the fold assignment and the exact image set."""
        return CrossvalInfo.of(self.dataset(stage.train), stage.train, stage.folds, stage.fold_seed)

    def _crossval(self, model: DeepGaze, stage: StageConfig) -> EvaluationReport:
        """Score every image with the member that did not train on it: `evaluate_model` with IG and
        LL against uniform, the leave-one-image-out (fitted) centre bias and (synthetic data) the
        truth. The backbone does not run again when the feature cache holds the images' features."""
        saved = self.run_dir / "model" / "crossval.json"
        if saved.exists() and (self.run_dir / "model" / "model.safetensors").exists():
            return EvaluationReport.from_dict(json.loads(saved.read_text()))
        return evaluate_model(
            model,
            self.dataset(stage.train),
            crossval=self.crossval_info(stage),
            metrics=["IG", "LL"],
            gold_standard=False,
            progress=False,
            features=self.feature_cache(model, stage.train),
        )


def check_checkpoint(path: Path) -> None:
    """Raise `TrainingError` if the checkpoint ``path`` cannot be read (truncated or damaged)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise TrainingError(
            f"cannot resume from {path}: the checkpoint is damaged or truncated ({' '.join(str(error).split())[:200]}); "
            "delete it to train this stage from its start, or rerun with --restart to start the whole run over"
        ) from None


def _stored_fingerprint(path: Path) -> str | None:
    """The fingerprint of the recipe a run directory holds (fields added since filled with their
    defaults); None if it cannot be read as a recipe."""
    try:
        return recipe_from_dict(json.loads(path.read_text()), where=str(path)).fingerprint()
    except (ConfigError, ValueError, OSError):
        return None


def _is_global_zero() -> bool:
    return not dist.is_available() or not dist.is_initialized() or dist.get_rank() == 0


def summary_table(results: list[StageResult], crossval: EvaluationReport | None) -> str:
    """The run's summary as Markdown: one row per stage, then the cross-validated scores."""
    lines = [
        "| stage | members | best epochs | val LL (bits/fix) | time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        ll = np.mean([v for v in r.best_ll if math.isfinite(v)]) if any(math.isfinite(v) for v in r.best_ll) else float("nan")
        lines.append(f"| {r.name} | {r.members} | {', '.join(map(str, r.best_epoch))} | {ll:.4f} | {r.seconds:.1f} |")
    if crossval:
        columns = (Column.IG_VS_UNIFORM, Column.IG_VS_CENTRE_BIAS)
        lines += ["", f"Cross-validated on {crossval.dataset['images']} images (each scored by the member that did not train on it):", ""]
        lines += ["| model | " + " | ".join(f"{column} (bits/fix)" for column in columns) + " |", "|---|---|---|"]
        for name, row in crossval.rows.items():
            lines.append(f"| {name} | " + " | ".join(f"{row[column]:.4f}" for column in columns) + " |")
        fraction = crossval.truth_fraction
        if fraction is not None:
            lines.append(f"\nThe ensemble reaches {100 * fraction:.1f}% of the truth's information gain over the centre bias.")
    return "\n".join(lines)
