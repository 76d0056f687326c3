"""Saving and loading `DeepGaze` files: ``config.json`` + ``model.safetensors``, strictly.

Loading reads safetensors only: a directory or repo that offers only pickle files
(``pytorch_model.bin``, ``*.pt``, ``*.ckpt``) is refused, never unpickled. Every tensor the model
expects must be in the file with the same shape and finite values, and the file must hold nothing
else.

Versions: ``config.json`` carries ``format_version`` (checked and migrated by `DeepGazeConfig`);
``model.safetensors`` carries, in its header metadata, the layout version of its tensors
(`WEIGHTS_FORMAT_VERSION`), the package version that wrote it and the model card information.
Files without that metadata are the first release's layout (format 1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import DeepGazeError
from ..io.atomic import atomic_path
from ..version import __version__
from .config import ConfigError, DeepGazeConfig

if TYPE_CHECKING:
    from ..hub.card import ModelCardInfo
    from .deepgaze import DeepGaze

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

#: Layout version of the tensors in model.safetensors (names and shapes). Bump it when a tensor is
#: renamed or reshaped, and convert older files where `load_weights` checks the format.
WEIGHTS_FORMAT_VERSION = 1
_FORMAT_KEY = "deepgaze_hub.weights_format"
_VERSION_KEY = "deepgaze_hub.version"
_CARD_KEY = "deepgaze_hub.card"


class WeightsError(DeepGazeError, RuntimeError):
    """Model files that cannot be loaded; the message lists what is wrong and what to do."""


def save_model_files(model: DeepGaze, directory: Path) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each atomically).

    The weights file's metadata records the weights format, the package version and
    ``model.card_info`` (see `deepgaze_hub.hub.card`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    metadata = {
        "format": "pt",
        "library": "deepgaze-hub",
        _FORMAT_KEY: str(WEIGHTS_FORMAT_VERSION),
        _VERSION_KEY: __version__,
    }
    if model.card_info is not None:
        metadata[_CARD_KEY] = json.dumps(model.card_info.to_dict(), sort_keys=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata=metadata)
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
    members: Sequence[int] | None = None,
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
        config = read_config(config_path, where=source)
    return load_model_files(
        cls, config, weights_path, where=source, backbone=backbone, members=members, map_location=map_location
    )


def read_config(path: str | Path, where: str) -> DeepGazeConfig:
    """Parse a ``config.json``; errors name ``where`` (the directory or repo it came from)."""
    try:
        return DeepGazeConfig.from_json(path)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error


def load_model_files(
    cls: type[DeepGaze],
    config: DeepGazeConfig,
    weights_path: str | Path,
    *,
    where: str,
    backbone: torch.nn.Module | None = None,
    members: Sequence[int] | None = None,
    map_location: str | torch.device = "cpu",
    card_info: ModelCardInfo | None = None,
) -> DeepGaze:
    """Build ``cls(config)``, load ``weights_path`` strictly, keep only ``members``; in eval mode.

    ``card_info`` is used when the weights file carries no model card information.
    """
    model = cls(config, backbone=backbone)
    metadata = load_weights(model, weights_path, where=where)
    model.card_info = _card_info(metadata) or card_info
    if members is not None:
        model = keep_members(model, members)
    return model.to(map_location).eval()


def load_weights(model: torch.nn.Module, path: str | Path, where: str | None = None) -> dict[str, str]:
    """Load a safetensors file into ``model`` strictly; return the file's header metadata.

    Errors list every missing, unexpected, misshapen or non-finite tensor.
    """
    where = where or str(path)
    name = Path(path).name
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{where}: {name} is not a readable safetensors file ({error})") from error
    _check_weights_format(metadata, where, name)  # older formats would be converted to the current one here
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [
        f"{key}: file {tuple(state[key].shape)}, model {tuple(expected[key].shape)}"
        for key in sorted(set(state) & set(expected))
        if state[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if misshapen:
        problems.append(f"wrong shapes {misshapen}")
    if problems:
        raise WeightsError(
            f"{where}: the weights in {name} do not match the model built from its config.json: "
            + "; ".join(problems)
            + ". The files are inconsistent or were tampered with; re-download or re-save them."
        )
    not_finite = sorted(
        key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()
    )
    if not_finite:
        raise WeightsError(f"{where}: {name} has NaN or infinite values in {not_finite}; the file is corrupt")
    model.load_state_dict(state, strict=True)
    return metadata


def _check_weights_format(metadata: dict[str, str], where: str, name: str) -> None:
    raw = metadata.get(_FORMAT_KEY, "1")
    try:
        version = int(raw)
    except ValueError:
        raise WeightsError(f"{where}: {name} has an unreadable weights format {raw!r}") from None
    if version > WEIGHTS_FORMAT_VERSION:
        written_by = f"deepgaze-hub {metadata[_VERSION_KEY]}" if _VERSION_KEY in metadata else "a newer deepgaze-hub"
        raise WeightsError(
            f"{where}: {name} uses weights format {version}, written by {written_by}; this "
            f"version reads formats <= {WEIGHTS_FORMAT_VERSION}. Upgrade with `pip install -U deepgaze-hub`."
        )


def _card_info(metadata: dict[str, str]) -> ModelCardInfo | None:
    from ..hub.card import ModelCardInfo

    raw = metadata.get(_CARD_KEY)
    if raw is None:
        return None
    try:
        return ModelCardInfo.from_dict(json.loads(raw))
    except (ValueError, TypeError):
        return None  # the card is descriptive only: a damaged one must not block loading


def keep_members(model: DeepGaze, members: Sequence[int]) -> DeepGaze:
    """`ensemble.select_members` that keeps the model card's provenance but not its evaluation table,
    which was measured on the full ensemble."""
    from .ensemble import select_members

    subset = select_members(model, members)
    if model.card_info is not None:
        title = model.card_info.title or model.card_info.name or "DeepGaze"
        subset.card_info = replace(model.card_info, title=f"{title}, members {list(members)}", evaluation=[])
    return subset
