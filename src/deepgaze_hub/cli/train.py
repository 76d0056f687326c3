"""``deepgaze-hub train``: run a training recipe (stages, k-fold ensemble) to a saved model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import show_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a DeepGaze ensemble from a recipe",
        description=(
            "Run the stages of a YAML recipe (see hub_configs/recipes/) and save the resulting "
            "ensemble with its cross-validated evaluation. Rerunning the same command after an "
            "interruption continues where it stopped."
        ),
    )
    parser.add_argument("--config", required=True, type=Path, help="recipe YAML file, or the name of a shipped recipe (deepgaze2-vgg19, synthetic-small)")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override recipe fields by dotted path, e.g. data.mit1003=/data/mit.h5 stages.0.epochs=5",
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="where to write the run (default: runs/<recipe name>)")
    parser.add_argument("--restart", action="store_true", help="discard an existing run in --run-dir")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.recipe import load_recipe
    from ..training.runner import RecipeRun

    recipe = load_recipe(args.config, args.overrides)
    run_dir = args.run_dir or Path("runs") / recipe.name
    RecipeRun(recipe, run_dir, restart=args.restart, progress=show_progress(args)).run()
    return 0
