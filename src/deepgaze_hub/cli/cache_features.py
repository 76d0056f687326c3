"""``deepgaze-hub cache-features``: compute a dataset's backbone features once, for training."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache-features",
        help="precompute backbone features of a dataset",
        description=(
            "Write the frozen backbone's features of every image of a dataset into a cache "
            "directory (HDF5 shards, float16, compressed). Interrupted runs resume; a cache made "
            "for other backbone settings is refused. With several GPUs, each computes a share."
        ),
    )
    parser.add_argument("--data", required=True, help="dataset HDF5 file, or 'embedded' for the embedded synthetic set")
    parser.add_argument("--config", required=True, type=Path, help="recipe YAML or shipped recipe name (its model section is used)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="recipe overrides")
    parser.add_argument("--out", required=True, type=Path, help="cache directory")
    parser.add_argument("--dtype", default=None, choices=["float16", "float32"], help="default: the recipe's")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass of the backbone (default: the recipe's)")
    parser.add_argument("--devices", default=None, help="devices for Lightning (e.g. 2, or auto)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..data import open_dataset
    from ..model.deepgaze import DeepGaze
    from ..training.feature_build import build_feature_cache
    from ..training.feature_cache import FeatureCache
    from ..training.recipe import load_recipe

    recipe = load_recipe(args.config, args.overrides)
    settings = recipe.feature_cache
    dataset = open_dataset(args.data)
    model = DeepGaze(recipe.model_config(1))
    cache = FeatureCache(args.out, model.config, args.dtype or settings.dtype)
    trainer = recipe.trainer if args.devices is None else dataclasses.replace(recipe.trainer, devices=args.devices)
    build_feature_cache(
        model,
        dataset,
        cache,
        batch_size=args.batch_size or settings.batch_size,
        compression=settings.compression,
        trainer=trainer,
    )
    print(f"{len(cache)} images cached in {args.out} ({cache.nbytes_on_disk() / 2**20:.1f} MiB)")
    return 0
