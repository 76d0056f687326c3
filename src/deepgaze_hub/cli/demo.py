"""``deepgaze-hub demo``: the whole product on the embedded synthetic data, offline, in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import show_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train, evaluate, save, reload and predict on the embedded synthetic data",
        description=(
            "Fit the centre bias, cache backbone features, train a k-fold DeepGaze ensemble with "
            "Lightning, evaluate it cross-validated against the centre bias, gold standard and "
            "known truth, save it as a Hub directory with its model card, reload it (from_pretrained "
            "and torch.hub), and write predictions and figures for held-out images. Offline; uses "
            "ImageNet VGG-19 weights only if they are already in torch's cache. Rerunning resumes."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("deepgaze-demo"), help="output folder (default: deepgaze-demo)")
    parser.add_argument("--folds", type=int, default=4, help="cross-validation folds = ensemble members (default 4)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out, folds=args.folds, epochs=args.epochs, progress=show_progress(args))
    return 0
