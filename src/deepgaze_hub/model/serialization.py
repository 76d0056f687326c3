"""Saving and loading `DeepGaze` files: ``config.json`` + ``model.safetensors``, strictly.

Loading reads safetensors only: a directory or repo that offers only pickle files
(``pytorch_model.bin``, ``*.pt``, ``*.ckpt``) is refused, never unpickled. Every tensor the model
expects must be in the file with the same shape, and the file must hold nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import DeepGazeError
from ..io.atomic import atomic_path
from .config import ConfigError, DeepGazeConfig

if TYPE_CHECKING:
    from .deepgaze import DeepGaze

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class WeightsError(DeepGazeError, RuntimeError):
    """Model files that cannot be loaded; the message lists what is wrong and what to do."""


def save_model_files(model: DeepGaze, directory: Path) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each atomically)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "library": "deepgaze-hub"})
    model.config.to_json(directory / CONFIG_FILE)


def load_model(
    cls: type[DeepGaze],
    source: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
    map_location: str | torch.device = "cpu",
    backbone: torch.nn.Module | None = None,
    config: DeepGazeConfig | None = None,
) -> DeepGaze:
    """Build a model from a directory or a Hub repo id; see `DeepGaze.from_pretrained`."""
    from ..hub.download import resolve_model_files

    config_path, weights_path = resolve_model_files(
        source,
        revision=revision,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
        token=token,
    )
    if config is None:
        try:
            config = DeepGazeConfig.from_json(config_path)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from error
    model = cls(config, backbone=backbone)
    load_weights(model, weights_path, where=source)
    return model.to(map_location).eval()


def load_weights(model: torch.nn.Module, path: str | Path, where: str | None = None) -> None:
    """Load a safetensors file into ``model`` strictly; errors list every mismatching tensor."""
    where = where or str(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{where}: {Path(path).name} is not a readable safetensors file ({error})") from error
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [
        f"{key}: file {tuple(state[key].shape)}, model {tuple(expected[key].shape)}"
        for key in sorted(set(state) & set(expected))
        if state[key].shape != expected[key].shape
    ]
    if missing or unexpected or misshapen:
        problems = []
        if missing:
            problems.append(f"missing tensors {missing}")
        if unexpected:
            problems.append(f"unexpected tensors {unexpected}")
        if misshapen:
            problems.append(f"wrong shapes {misshapen}")
        raise WeightsError(
            f"{where}: the weights do not match the model built from its config.json: "
            + "; ".join(problems)
            + ". The files are inconsistent or were tampered with; re-download or re-save them."
        )
    model.load_state_dict(state, strict=True)


def describe_files(files: list[str]) -> dict[str, Any]:
    """Which of ``files`` are safetensors and which are pickles (for error messages)."""
    return {
        "safetensors": [f for f in files if f.endswith(".safetensors")],
        "pickle": [f for f in files if f.endswith(PICKLE_SUFFIXES)],
    }
