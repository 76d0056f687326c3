"""Training building blocks: recipes, batching, feature cache, the objective."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.errors import ConfigError, TrainingError
from deepgaze_hub.training import FeatureCache, SizeBucketBatchSampler, build_feature_cache, load_recipe
from deepgaze_hub.training.batching import is_padding, real_position
from deepgaze_hub.training.datamodule import FixationDataModule
from deepgaze_hub.training.module import DeepGazeModule
from deepgaze_hub.training.recipe import TrainerConfig

RECIPES = Path(__file__).resolve().parents[1] / "hub_configs" / "recipes"
CPU = TrainerConfig(accelerator="cpu")
QUIET = {"enable_progress_bar": False}
SQUEEZE = dict(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None)


def squeeze_model(members: int = 1, **backbone) -> DeepGaze:
    torch.manual_seed(0)
    return DeepGaze(DeepGazeConfig(backbone=BackboneConfig(**{**SQUEEZE, **backbone}), num_members=members))


# -- recipes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["deepgaze2-vgg19", "synthetic-small"])
def test_shipped_recipes_are_valid(name):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.name == name and recipe.stages
    assert recipe.model_config(recipe.stages[-1].num_members).backbone.name == "vgg19"


def test_paper_recipe_is_the_paper_protocol():
    recipe = load_recipe(RECIPES / "deepgaze2-vgg19.yaml")
    pretrain, finetune = recipe.stages
    assert (pretrain.train, pretrain.val, pretrain.folds) == ("salicon_train", "mit1003", None)
    assert (finetune.train, finetune.folds, finetune.init) == ("mit1003", 10, "pretrain")
    assert pretrain.optimizer.lr == finetune.optimizer.lr == 1e-3 and pretrain.optimizer.gamma == 0.1


def test_overrides_by_dotted_path():
    recipe = load_recipe(
        RECIPES / "synthetic-small.yaml",
        ["stages.0.epochs=3", "model.backbone.weights=null", "data.synthetic=/x.h5", "stages.0.optimizer.milestones=[1, 2]"],
    )
    assert recipe.stages[0].epochs == 3 and recipe.data["synthetic"] == "/x.h5"
    assert recipe.model["backbone"]["weights"] is None
    assert recipe.stages[0].optimizer.milestones == [1, 2]


@pytest.mark.parametrize(
    "override, message",
    [
        ("stages.0.epoch=3", "unknown field stages.0.epoch"),
        ("stages.0.train=nowhere", "train dataset 'nowhere' is not in data"),
        ("stages.0.init=later", "must name an earlier stage"),
        ("stages.0.val=synthetic", "validates on its own folds"),
        ("stages.0.averaging=median", "averaging"),
        ("model.readout_channels=[4, 2]", "readout_channels"),
        ("stages.5.epochs=1", "stages.5 is not an index"),
        ("bogus", "key.path=value"),
    ],
)
def test_bad_recipes_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(RECIPES / "synthetic-small.yaml", [override])


# -- batching -------------------------------------------------------------------------------------
def test_batches_hold_one_size_and_ranks_split_global_batches():
    sizes = [(10, 20)] * 7 + [(30, 40)] * 5 + [(10, 20)] * 2
    single = SizeBucketBatchSampler(sizes, 4, shuffle=True, seed=3)
    single.set_epoch(2)
    ranks = [SizeBucketBatchSampler(sizes, 4, shuffle=True, seed=3, num_replicas=3, rank=r) for r in range(3)]
    for sampler in ranks:
        sampler.set_epoch(2)
    global_batches = list(single)
    per_rank = [list(sampler) for sampler in ranks]
    assert all(len(batches) == len(global_batches) for batches in per_rank)
    for step, batch in enumerate(global_batches):
        assert len({sizes[i] for i in batch}) == 1
        parts = [per_rank[r][step] for r in range(3)]
        real = sorted(p for part in parts for p in part if not is_padding(p))
        assert real == sorted(batch)
        for part in parts:
            if any(is_padding(p) for p in part):
                assert len(part) == 1 and real_position(part[0]) in batch
    assert sorted(i for b in global_batches for i in b) == list(range(len(sizes)))
    again = SizeBucketBatchSampler(sizes, 4, shuffle=True, seed=3)
    again.set_epoch(2)
    assert list(again) == global_batches
    again.set_epoch(3)
    assert list(again) != global_batches
    # Lightning calls set_epoch on batch_sampler.sampler
    again.sampler.set_epoch(2)
    assert list(again) == global_batches


# -- feature cache ----------------------------------------------------------------------------------
def test_feature_cache_builds_resumes_and_detects_staleness(synthetic_dataset, tmp_path):
    model = squeeze_model()
    cache = FeatureCache(tmp_path / "cache", model.config)
    subset = _Subset(synthetic_dataset, range(5))
    build_feature_cache(model, subset, cache, batch_size=2, shard_size=3, trainer=CPU, trainer_overrides=QUIET)
    assert len(cache) == 5 and len(list((tmp_path / "cache").glob("shard-*.h5"))) == 2
    # a later build computes only the missing images
    before = {p.name for p in (tmp_path / "cache").glob("shard-*.h5")}
    build_feature_cache(model, synthetic_dataset, cache, batch_size=4, trainer=CPU, trainer_overrides=QUIET)
    assert len(cache) == len(synthetic_dataset)
    new = FeatureCache(tmp_path / "cache", model.config)  # a fresh reader sees everything
    assert len(new) == len(synthetic_dataset) and before < {p.name for p in (tmp_path / "cache").glob("shard-*.h5")}
    image_id = synthetic_dataset.image_ids[7]
    cached = new[image_id]
    assert cached.dtype == torch.float16
    with torch.no_grad():
        direct = model.extract_features(synthetic_dataset.load_image(7)[None])[0]
    torch.testing.assert_close(cached.float(), direct, rtol=2e-3, atol=2e-3)
    with pytest.raises(TrainingError, match="layers"):
        FeatureCache(tmp_path / "cache", squeeze_model(layers=["features.12"]).config)
    with pytest.raises(TrainingError, match="init_seed"):
        FeatureCache(tmp_path / "cache", squeeze_model(init_seed=1).config)


class _Subset:
    """The first images of a dataset, with the dataset API the cache build uses."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)
        self.image_ids = [dataset.image_ids[i] for i in self.indices]
        self.image_sizes = dataset.image_sizes[self.indices]

    def load_image(self, i):
        return self.dataset.load_image(self.indices[i])


# -- the objective ------------------------------------------------------------------------------
@pytest.mark.parametrize("averaging", ["image", "fixation"])
def test_objective_is_bits_per_fixation_vs_uniform(synthetic_dataset, averaging):
    model = squeeze_model(members=2).eval()
    dm = FixationDataModule(synthetic_dataset, num_folds=2, joint=True, batch_size=3)
    batch = next(iter(dm.val_dataloader()))
    module = DeepGazeModule(model, averaging=averaging)
    bits, counts, bias_bits = module.member_bits(batch)
    height, width = batch.size
    with torch.no_grad():
        full = model.member_log_densities(batch.images)  # (B, K, H, W)
    for b in range(len(counts)):
        rows = batch.fix_y[batch.fix_batch == b].long()
        cols = batch.fix_x[batch.fix_batch == b].long()
        assert counts[b] == len(rows)
        for k in range(2):
            expected = (full[b, k, rows, cols].double().mean() + math.log(height * width)) / math.log(2)
            assert abs(bits[b, k].item() - expected.item()) < 1e-4
        bias = model.centerbias((height, width))[rows, cols].double().mean()
        assert abs(bias_bits[b].item() - (bias + math.log(height * width)).item() / math.log(2)) < 1e-4
    # member k never trains on its own fold's images
    folds = dm.folds[batch.index.numpy()]
    assert np.array_equal(batch.mask.numpy(), folds[:, None] == np.arange(2)[None, :])


def test_loaders_work_with_worker_processes(synthetic_dataset, tmp_path):
    model = squeeze_model()
    cache = FeatureCache(tmp_path / "cache", model.config)
    build_feature_cache(model, synthetic_dataset, cache, batch_size=8, trainer=CPU, trainer_overrides=QUIET)
    cache[synthetic_dataset.image_ids[0]]  # the parent holds open handles before the workers fork
    for features in (cache, None):
        dm = FixationDataModule(synthetic_dataset, num_folds=2, joint=True, batch_size=4, num_workers=2, features=features)
        batches = list(dm.val_dataloader())
        assert sum(len(b.index) for b in batches) == len(synthetic_dataset)
        first = batches[0]
        pixels = first.features if features is not None else first.images
        expected = cache[synthetic_dataset.image_ids[int(first.index[0])]] if features is not None else synthetic_dataset.load_image(int(first.index[0]))
        torch.testing.assert_close(pixels[0], expected)


def test_validation_nss_and_auc_match_a_direct_computation(synthetic_dataset):
    model = squeeze_model(members=2).eval()
    dm = FixationDataModule(synthetic_dataset, num_folds=2, joint=True, batch_size=3)
    batch = next(iter(dm.val_dataloader()))
    module = DeepGazeModule(model)
    with torch.no_grad():
        features = model.extract_features(batch.images)
        nss, auc = module.nss_and_auc(batch, *model.grid_log_densities(features, batch.size))
        full = model.member_log_densities(batch.images).double().exp()  # (B, K, H, W)
    for b in range(3):
        rows = batch.fix_y[batch.fix_batch == b].long()
        cols = batch.fix_x[batch.fix_batch == b].long()
        for k in range(2):
            p = full[b, k]
            values = p[rows, cols]
            expected_nss = ((values - p.mean()) / p.std(unbiased=False)).mean()
            flat = p.flatten()
            lower = (flat[None, :] < values[:, None]).double().sum(1)
            equal = (flat[None, :] == values[:, None]).double().sum(1)
            expected_auc = ((lower + 0.5 * equal) / flat.numel()).mean()
            assert abs(nss[b, k].item() - expected_nss.item()) < 1e-3 * max(1, abs(expected_nss.item()))
            assert abs(auc[b, k].item() - expected_auc.item()) < 1e-4


def test_shipped_recipes_load_by_name():
    assert load_recipe("synthetic-small").name == "synthetic-small"
    with pytest.raises(ConfigError, match="no recipe file nowhere.yaml.*synthetic-small"):
        load_recipe("nowhere.yaml")


# -- hardening: recipes of the wrong type or size -----------------------------------------------------
@pytest.mark.parametrize(
    "override, field, allowed",
    [
        ("stages.0.epochs=abc", "stages.0.epochs", "must be an integer, got 'abc'"),
        ("stages.0.folds=two", "stages.0.folds", "must be an integer or null, got 'two'"),
        ("stages.0.optimizer.lr=fast", "stages.0.optimizer.lr", "must be a finite number, got 'fast'"),
        ("stages.0.epochs=0", "stages.0.epochs", "must be >= 1"),
        ("stages.0.folds=1", "stages.0.folds", "must be >= 2"),
        ("stages.0.optimizer.lr=0", "stages.0.optimizer.lr", "must be > 0"),
        ("stages.0.batch_size=true", "stages.0.batch_size", "must be an integer, got True"),
        ("feature_cache.dtype=float8", "feature_cache.dtype", "must be one of"),
        ("trainer.num_nodes=-1", "trainer.num_nodes", "must be >= 1"),
    ],
)
def test_recipe_values_of_the_wrong_type_or_out_of_bounds_name_file_and_field(override, field, allowed):
    with pytest.raises(ConfigError) as caught:
        load_recipe(RECIPES / "synthetic-small.yaml", [override])
    message = str(caught.value)
    assert "synthetic-small.yaml" in message and f"{field} {allowed}" in message and "\n" not in message


def test_wrong_types_in_a_recipe_file_and_on_the_command_line_are_one_line_errors(tmp_path, capsys):
    from deepgaze_hub.cli import main

    text = (RECIPES / "synthetic-small.yaml").read_text().replace("folds: 4", "folds: two")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"bad.yaml.*stages.0.folds must be an integer or null, got 'two'"):
        load_recipe(tmp_path / "bad.yaml")
    assert main(["train", "--config", "synthetic-small", "--run-dir", str(tmp_path / "run"), "--set", "stages.0.epochs=abc"]) != 0
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "stages.0.epochs must be an integer, got 'abc'" in error
    assert not (tmp_path / "run").exists()  # refused before anything was made


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    assert (tmp_path / "bomb.yaml").stat().st_size < 1100
    started = __import__("time").perf_counter()
    with pytest.raises(ConfigError, match="bomb.yaml expands to more than"):
        load_recipe(tmp_path / "bomb.yaml")
    assert __import__("time").perf_counter() - started < 5


def test_configs_built_in_python_are_checked_too():
    from deepgaze_hub.training.recipe import OptimizerConfig, StageConfig

    with pytest.raises(ConfigError, match="lr must be > 0"):
        OptimizerConfig(lr=-1.0)
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        StageConfig(name="s", train="d", epochs=0)


# -- hardening: a dataset whose stored image size was tampered with -------------------------------------
def test_training_on_a_dataset_with_a_tampered_image_size_is_a_clear_error(synthetic_dataset, tmp_path, capsys):
    import shutil
    import time

    import h5py

    from deepgaze_hub.cli import main

    copy = tmp_path / "tampered.h5"
    shutil.copy(synthetic_dataset.path, copy)
    with h5py.File(copy, "r+") as f:
        f["images/size"][0] = [100_000, 100_000]
    started = time.perf_counter()
    code = main(
        ["train", "--config", "synthetic-small", "--run-dir", str(tmp_path / "run"), "--set", f"data.synthetic={copy}", "model.backbone.weights=null"]
    )
    error = capsys.readouterr().err.strip()
    assert code != 0 and time.perf_counter() - started < 30
    assert "tampered.h5" in error and "100000 x 100000" in error and error.count("\n") == 0


def test_feature_cache_names_an_unreadable_shard(tmp_path):
    model = squeeze_model()
    FeatureCache(tmp_path / "cache", model.config)
    (tmp_path / "cache" / "shard-damaged.h5").write_bytes(b"not an HDF5 file")
    with pytest.raises(TrainingError, match="shard-damaged.h5 is unreadable.*delete it"):
        FeatureCache(tmp_path / "cache", model.config)
