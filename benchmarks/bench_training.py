"""Training speed, measured side by side in one run on the same data and model.

1. Epoch time reading cached features vs running the frozen VGG-19 every step (at the
   dataset's size and at 1024x768).
2. Feature-cache size per image (float16, lzf) at the dataset's size and at 1024x768 (MIT1003's
   most common size), and the time to build the cache.
3. A k-fold ensemble trained jointly (all k members per step, fold masks) vs fold by fold
   (k runs of one member), per epoch of every member.

The backbone is a randomly initialised VGG-19: timing does not depend on its weights.

    python benchmarks/bench_training.py [--folds 4] [--epochs 5] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.data import default_dataset, make_synthetic_dataset
from deepgaze_hub.training import DeepGazeModule, FeatureCache, FixationDataModule, build_feature_cache, make_trainer
from deepgaze_hub.training.recipe import OptimizerConfig, TrainerConfig


def epoch_seconds(model: DeepGaze, datamodule: FixationDataModule, epochs: int) -> float:
    """Median wall time of one training epoch (validation off)."""
    times: list[float] = []

    class Clock(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            times.append(time.perf_counter() - self.start)

    trainer = make_trainer(
        TrainerConfig(accelerator="cpu", deterministic=False),
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        callbacks=[Clock()],
    )
    trainer.fit(DeepGazeModule(model, OptimizerConfig()), datamodule=datamodule)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    dataset = default_dataset(cache_dir=work)
    config = DeepGazeConfig(backbone=BackboneConfig(weights=None))
    model = DeepGaze(config)
    height, width = (int(v) for v in dataset.image_sizes[0])
    print(
        f"deepgaze-hub training benchmark: {len(dataset)} images of {width}x{height}, VGG-19, batch {args.batch_size}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}"
    )

    cache = FeatureCache(work / "cache", model.config)
    start = time.perf_counter()
    build_feature_cache(model, dataset, cache, batch_size=args.batch_size, trainer=TrainerConfig(accelerator="cpu"), trainer_overrides={"enable_progress_bar": False})
    build = time.perf_counter() - start
    print(f"cache build: {build:.1f} s for {len(dataset)} images, {cache.nbytes_on_disk() / len(dataset) / 1024:.0f} KiB per image at {width}x{height}")

    big = make_synthetic_dataset(work / "big.h5", num_images=3, size=(768, 1024), seed=1)
    big_cache = FeatureCache(work / "big-cache", model.config)
    build_feature_cache(model, big, big_cache, batch_size=1, trainer=TrainerConfig(accelerator="cpu"), trainer_overrides={"enable_progress_bar": False})
    features = big_cache[big.image_ids[0]]
    print(
        f"cache size at 1024x768: {big_cache.nbytes_on_disk() / len(big) / 2**20:.2f} MiB per image on disk "
        f"(features {tuple(features.shape)} float16 = {features.numel() * 2 / 2**20:.2f} MiB raw)"
    )

    big_without = epoch_seconds(model, FixationDataModule(big, batch_size=1), args.epochs)
    big_with = epoch_seconds(model, FixationDataModule(big, batch_size=1, features=big_cache), args.epochs)
    print(
        f"epoch of {len(big)} images at 1024x768: without cache {big_without:.2f} s, with cache {big_with:.3f} s"
        f"  -> cache speed-up {big_without / big_with:.0f}x"
    )
    without = epoch_seconds(model, FixationDataModule(dataset, batch_size=args.batch_size), args.epochs)
    with_cache = epoch_seconds(model, FixationDataModule(dataset, batch_size=args.batch_size, features=cache), args.epochs)
    print(f"epoch without cache: {without:.2f} s, with cache: {with_cache:.3f} s  -> cache speed-up {without / with_cache:.0f}x")

    k = args.folds
    joint_model = DeepGaze(DeepGazeConfig(backbone=config.backbone, num_members=k), backbone=model.backbone)
    joint = epoch_seconds(
        joint_model, FixationDataModule(dataset, num_folds=k, joint=True, batch_size=args.batch_size, features=cache), args.epochs
    )
    sequential = sum(
        epoch_seconds(model, FixationDataModule(dataset, num_folds=k, fold=f, batch_size=args.batch_size, features=cache), args.epochs)
        for f in range(k)
    )
    print(
        f"{k}-fold ensemble, one epoch of every member (cached features): joint {joint:.3f} s, "
        f"fold by fold {sequential:.3f} s  -> joint is {sequential / joint:.1f}x faster"
    )


if __name__ == "__main__":
    main()
