"""The ``deepgaze-hub`` command. Each module of this package adds one subcommand.

A subcommand module defines ``register(subparsers)``, which adds its parser and sets
``func=run`` with ``run(args) -> int`` (the exit status). Modules are found automatically.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from ..errors import DeepGazeError
from ..version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepgaze-hub",
        description="DeepGaze II saliency prediction: predict, train, evaluate, publish and serve.",
    )
    parser.add_argument("--version", action="version", version=f"deepgaze-hub {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DeepGazeError as error:
        print(f"deepgaze-hub {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepgaze-hub {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
