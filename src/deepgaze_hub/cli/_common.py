"""Options shared by several subcommands: ``--device``.

``add_device_argument(parser)`` adds the option; ``resolve_device(args.device)`` turns it into a
`torch.device` that exists on this machine, or raises `ConfigError` with one line saying what to
use instead (exit status 1). A name torch does not know is a usage error (exit status 2, argparse).
"""

from __future__ import annotations

import argparse

import torch

from ..errors import ConfigError

AUTO = "auto"
_KNOWN = "cpu, cuda, cuda:N, mps or auto"


def device_name(text: str) -> str:
    """argparse ``type=``: accept ``auto`` or any device string torch parses (``cpu``, ``cuda:1``)."""
    text = text.strip()
    if text.lower() == AUTO:
        return AUTO
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
