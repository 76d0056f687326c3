"""The ``deepgaze-hub`` command. Each module of this package adds one subcommand.

A subcommand module defines ``register(subparsers)``, which adds its parser and sets
``func=run`` with ``run(args) -> int`` (the exit status). Modules are found automatically;
modules whose name starts with ``_`` (``_common``: shared options) are helpers, not commands.

Conventions (tests/test_cli_conventions.py checks them): a command module imports torch, the
model and the other heavy parts only inside ``run``, so that ``--help`` answers at once; every
option has a help text; every parser has ``-q/--quiet`` (`_common.CommandParser`); results go to
stdout, messages and progress bars to stderr (bars only when it is a terminal).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from ..errors import DeepGazeError
from ..version import __version__
from ._common import CommandParser


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="deepgaze-hub",
        description="DeepGaze II saliency prediction: predict, train, evaluate, publish and serve.",
    )
    parser.add_argument("--version", action="version", version=f"deepgaze-hub {__version__}")
    parser.set_defaults(quiet=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status.

    0: done; 1: a runtime error (a missing model, an unreadable file, an image that failed),
    printed as one line; 2: a usage error (unknown option, bad value: argparse); 130: interrupted.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version (0) or a usage error (2), already printed
        return done.code if isinstance(done.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except DeepGazeError as error:
        print(f"deepgaze-hub {args.command}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # the file system said no: a full disk, a read-only or missing folder
        where = f"{error.filename}: " if error.filename else ""
        print(f"deepgaze-hub {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"deepgaze-hub {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
