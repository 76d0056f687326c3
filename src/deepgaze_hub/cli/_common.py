"""Options shared by several subcommands: ``--quiet``, ``--model``, ``--device``.

Every command parser is a `CommandParser`, which adds ``-q/--quiet``; ``show_progress(args)`` is the
one answer to "draw progress bars?" (stderr is a terminal and not ``--quiet``), passed down as a
parameter. ``add_model_argument(parser)`` adds ``--model`` and ``--revision`` with one help text.
``add_device_argument(parser)`` adds ``--device``; ``resolve_device(args.device)`` turns it into a
`torch.device` that exists on this machine, or raises `ConfigError` with one line saying what to
use instead (exit status 1). A name torch does not know is a usage error (exit status 2, argparse).

This module, like every command module's top level, imports neither torch nor the model, so that
``deepgaze-hub --help`` starts fast (tests/test_cli_conventions.py checks it); torch is imported
inside the functions that need it.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..io.progress import progress_wanted

if TYPE_CHECKING:
    import torch

#: values shown in the help and choices of the commands; tests/test_cli_conventions.py checks that
#: they equal the library's (`deepgaze_hub.io.images.DEFAULT_MAX_PIXELS`,
#: `deepgaze_hub.model.backbone.PRECISIONS`, `deepgaze_hub.data.EMBEDDED`, `.OUTSIDE_POLICIES`,
#: `deepgaze_hub.hub.official.KINDS`, `deepgaze_hub.hub.release.SOURCE_FILE`), which cannot be
#: imported here without loading torch.
DEFAULT_MAX_PIXELS = 40_000_000
PRECISIONS = ("float32", "bfloat16", "float16")
EMBEDDED = "embedded"
OUTSIDE_POLICIES = ("drop", "clip", "error")
RELEASE_KINDS = ("deepgaze1", "deepgaze2e")
SOURCE_FILE = "source.json"

MODEL_HELP = (
    "the model, one of: a registry name (the models in hub_configs/, listed by `deepgaze-hub list`, "
    "e.g. deepgaze2-vgg19); hf-hub:OWNER/NAME or hf-hub:OWNER/NAME@REVISION for a Hugging Face Hub repo; "
    "or the path of a local model directory (written by save_pretrained, `deepgaze-hub train` or `convert`)"
)


class CommandParser(argparse.ArgumentParser):
    """The parser of every command and subcommand: adds ``-q/--quiet`` (no progress bars).

    The option's default is suppressed so that ``--quiet`` given at any level of a nested command
    (``deepgaze-hub data --quiet import csv ...`` or ``... import csv --quiet``) is kept; the top
    parser sets ``quiet=False``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
            help="no progress bars (they are drawn on stderr, and only when it is a terminal)",
        )  # fmt: skip


def deferred(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A ``func`` for ``set_defaults`` that imports ``deepgaze_hub.cli.<module>`` only when it runs."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(args)

    return run


def positive_int(text: str, what: str = "a positive integer") -> int:
    """argparse ``type=``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes {what}, got {text!r}")
    return value


def show_progress(args: argparse.Namespace) -> bool:
    """Draw progress bars for this command: stderr is a terminal and ``--quiet`` was not given."""
    return progress_wanted(quiet=getattr(args, "quiet", False))


def add_model_argument(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--model`` (every kind of model the loader accepts) and ``--revision``."""
    parser.add_argument("--model", required=required, metavar="MODEL", help=MODEL_HELP)
    parser.add_argument(
        "--revision", default=None,
        help="Hub revision (branch, tag or commit hash) when --model is hf-hub:OWNER/NAME; same as @REVISION",
    )  # fmt: skip


AUTO = "auto"
_KNOWN = "cpu, cuda, cuda:N, mps or auto"


def device_name(text: str) -> str:
    """argparse ``type=``: accept ``auto`` or any device string torch parses (``cpu``, ``cuda:1``)."""
    text = text.strip()
    if text.lower() == AUTO:
        return AUTO
    import torch  # heavy: only when a device is named

    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use {_KNOWN}") from None
    return text


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=device_name,
        default=AUTO,
        help=f"where the model runs: {_KNOWN} (default: auto, the first GPU if there is one, else cpu)",
    )


def resolve_device(text: str) -> torch.device:
    """The `torch.device` named by ``text`` (``auto``: cuda if available, else cpu), checked to exist."""
    import torch  # heavy: only when the command runs

    if text == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {text}: unknown device; use {_KNOWN}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch was built without CUDA" if torch.version.cuda is None else "no usable NVIDIA GPU or driver was found"
            raise ConfigError(f"--device {text}: CUDA is not available ({why}); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {text}: there is no such GPU; this machine has {count} (cuda:0 to cuda:{count - 1})")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {text}: Apple MPS is not available on this machine; use --device cpu")
    elif device.type != "cpu":
        backend = getattr(torch, device.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise ConfigError(f"--device {text}: the {device.type} backend is not available here; use --device cpu")
    return device
