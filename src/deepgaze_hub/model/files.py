"""A saved model's two files, ``config.json`` + ``model.safetensors``: finding, reading, writing.

This module knows the files, not the model class: it reads and writes any ``nn.Module``'s state
strictly, and finds the two files in a local directory or in one snapshot of a Hugging Face Hub
repo (through huggingface_hub only).

Loading reads safetensors only: a directory or repo that offers only pickle files
(``pytorch_model.bin``, ``*.pt``, ``*.ckpt``) is refused, never unpickled. Every tensor the model
expects must be in the file with the same shape and finite values, and the file must hold nothing
else.

Versions: ``config.json`` carries ``format_version`` (checked and migrated by `DeepGazeConfig`);
``model.safetensors`` carries, in its header metadata, the layout version of its tensors
(`WEIGHTS_FORMAT_VERSION`), the package version that wrote it and the model card information (a
JSON object, see `deepgaze_hub.model.card.ModelCardInfo`). Files without that metadata are the
first release's layout (format 1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import WeightsError
from ..io.atomic import atomic_path
from ..version import __version__
from .config import DeepGazeConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: The files loading reads, in this order; the only files ever downloaded.
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

#: Layout version of the tensors in model.safetensors (names and shapes). Bump it when a tensor is
#: renamed or reshaped, and convert older files where `load_weights` checks the format.
#: 2: backbone weights may be stored under ``backbones.<i>.``. A file without them is written as
#: format 1 (the same layout as before).
WEIGHTS_FORMAT_VERSION = 2
#: Prefix of stored backbone tensors (format 2).
BACKBONE_PREFIX = "backbones."
_FORMAT_KEY = "deepgaze_hub.weights_format"
_VERSION_KEY = "deepgaze_hub.version"
_CARD_KEY = "deepgaze_hub.card"


@dataclass(frozen=True)
class ModelFiles:
    """Local paths of a model's two files and where they came from (for messages).

    ``where`` is the directory, or ``owner/name@revision`` for a Hub repo.
    """

    config: Path
    weights: Path
    where: str


# -- writing ---------------------------------------------------------------------------------------
def write_model_files(
    directory: str | Path, config: DeepGazeConfig, state: dict[str, torch.Tensor], card: dict[str, Any] | None
) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each atomically).

    ``state`` is a state dict; ``card`` (plain JSON data, or None) goes into the weights file's
    header metadata with the weights format and the package version.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().cpu().contiguous() for key, value in state.items()}
    metadata = {
        "format": "pt",
        "library": "deepgaze-hub",
        _FORMAT_KEY: "2" if any(key.startswith(BACKBONE_PREFIX) for key in tensors) else "1",
        _VERSION_KEY: __version__,
    }
    if card is not None:
        metadata[_CARD_KEY] = json.dumps(card, sort_keys=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    config.to_json(directory / CONFIG_FILE)


# -- reading ---------------------------------------------------------------------------------------
def read_config(path: str | Path, where: str) -> DeepGazeConfig:
    """Parse a ``config.json``; `ConfigError` names ``where/config.json`` (``where`` is the
    directory or ``repo@revision`` it came from), the field and what it allows."""
    return DeepGazeConfig.from_json(path, where=f"{where.rstrip('/')}/{Path(path).name}")


@dataclass(frozen=True)
class LayoutMismatch:
    """How a mapping of tensors differs from an expected ``{key: shape}`` (see `compare_layout`).

    ``missing``: expected keys absent (in the expected order); ``unexpected``: keys not expected
    (in the mapping's order); ``misshapen``: ``(key, value, expected shape)`` for values that are
    not tensors of the expected shape. False when there is no difference.
    """

    missing: list[str]
    unexpected: list[str]
    misshapen: list[tuple[str, Any, tuple[int, ...]]]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.misshapen)


def compare_layout(found: Mapping[str, Any], expected: Mapping[str, Any]) -> LayoutMismatch:
    """Compare the keys and tensor shapes of ``found`` with ``expected`` (``{key: shape}``): the one
    comparison behind every strict load of a state dict (this module's and the converters')."""
    misshapen = [
        (key, found[key], tuple(shape))
        for key, shape in expected.items()
        if key in found and not (isinstance(found[key], torch.Tensor) and tuple(found[key].shape) == tuple(shape))
    ]
    return LayoutMismatch(
        missing=[key for key in expected if key not in found],
        unexpected=[str(key) for key in found if key not in expected],
        misshapen=misshapen,
    )


def load_weights(
    module: torch.nn.Module,
    path: str | Path,
    where: str | None = None,
    extra: Mapping[str, torch.nn.Module] | None = None,
) -> dict[str, str]:
    """Load a safetensors file into ``module`` strictly; return the file's header metadata.

    ``extra``: further modules stored in the same file, ``{key prefix: module}`` (e.g. a stored
    backbone under ``"backbones.0."``); their tensors are expected and loaded strictly as well.
    Errors (`WeightsError`) list every missing, unexpected, misshapen or non-finite tensor.
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
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    for prefix, part in (extra or {}).items():
        expected.update({prefix + key: tuple(value.shape) for key, value in part.state_dict().items()})
    mismatch = compare_layout(state, expected)
    missing, unexpected = sorted(mismatch.missing), sorted(mismatch.unexpected)
    misshapen = [
        f"{key}: file {tuple(value.shape)}, model {shape}"
        for key, value, shape in sorted(mismatch.misshapen, key=lambda item: item[0])
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
    parts = sorted((extra or {}).items(), key=lambda item: -len(item[0]))
    for prefix, part in parts:
        part.load_state_dict({k[len(prefix):]: state.pop(k) for k in list(state) if k.startswith(prefix)}, strict=True)
    module.load_state_dict(state, strict=True)
    return metadata


def card_from_metadata(metadata: dict[str, str]) -> dict[str, Any] | None:
    """The model card information stored by `write_model_files`, as plain data; None if absent or damaged."""
    raw = metadata.get(_CARD_KEY)
    if raw is None:
        return None
    try:
        card = json.loads(raw)
    except ValueError:
        return None  # the card is descriptive only: a damaged one must not block loading
    return card if isinstance(card, dict) else None


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


# -- finding ---------------------------------------------------------------------------------------
def find_model_files(
    source: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> ModelFiles:
    """The two files of a model: an existing directory, else the Hub repo id ``source``.

    This is `DeepGaze.from_pretrained`'s (huggingface_hub's) convention; `deepgaze_hub.load` states
    the kind explicitly and calls `local_model_files` or `hub_model_files`.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return local_model_files(path)
    text = str(source)
    if path.exists() or text.startswith((".", "/", "~")):
        raise WeightsError(f"{text} is not a model directory (it does not exist or is a file)")
    return hub_model_files(
        text,
        revision=revision,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
        token=token,
    )


def local_model_files(directory: str | Path) -> ModelFiles:
    """The two files in a directory written by ``save_pretrained``; `WeightsError` says what is missing."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise WeightsError(f"{directory} is not a model directory (it does not exist or is a file)")
    config, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    names = sorted(p.name for p in directory.iterdir())
    if not weights.is_file():
        raise WeightsError(_missing_weights_message(str(directory), names))
    if not config.is_file():
        raise WeightsError(f"{directory}: no {CONFIG_FILE}; is this a directory written by save_pretrained?")
    return ModelFiles(config, weights, str(directory))


def hub_model_files(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> ModelFiles:
    """Download (or find in the cache) the two files of Hub repo ``repo_id`` at ``revision``.

    Both come from one snapshot, i.e. one commit, even when ``revision`` is a branch that moves;
    nothing else of the repo is fetched. Failures (`WeightsError`) name the repo, the revision and
    what to do: a missing repo or revision, a repo that only offers pickle files (refused, never
    unpickled), or offline mode without the files in the cache.
    """
    where = f"{repo_id}@{revision or 'main'}"
    offline = bool(constants.HF_HUB_OFFLINE or local_files_only)
    try:
        snapshot = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=list(MODEL_FILES),
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
                library_name="deepgaze-hub",
            )
        )
    except HFValidationError as error:
        raise WeightsError(f"{repo_id!r} is neither a model directory nor a valid Hub repo id ({error})") from None
    except RepositoryNotFoundError:
        raise WeightsError(
            f"{where}: no such model repo on {constants.ENDPOINT} (or it is private: log in with "
            "`hf auth login` or pass token=...)"
        ) from None
    except RevisionNotFoundError:
        raise WeightsError(f"{where}: the repo has no revision {revision!r} (branch, tag or commit)") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, IncompleteSnapshotError):
        raise WeightsError(_not_cached_message(where, cache_dir, offline)) from None
    except HfHubHTTPError as error:
        raise WeightsError(f"{where}: the Hub could not serve the model files ({error}); try again later") from None
    missing = [name for name in MODEL_FILES if not (snapshot / name).is_file()]
    if missing and offline:
        raise WeightsError(_not_cached_message(where, cache_dir, offline))
    if missing:
        raise WeightsError(_missing_file_message(repo_id, revision, missing[-1], token))
    return ModelFiles(snapshot / CONFIG_FILE, snapshot / WEIGHTS_FILE, where)


def _not_cached_message(where: str, cache_dir: str | Path | None, offline: bool) -> str:
    reason = "offline mode is on (HF_HUB_OFFLINE=1 or local_files_only)" if offline else "the Hub could not be reached"
    return (
        f"{where}: the model files are not in the local cache ({cache_dir or constants.HF_HUB_CACHE}) and {reason}. "
        "Run the same call once with network access (HF_HUB_OFFLINE unset) to fill the cache, "
        "or pass a local directory made with save_pretrained."
    )


def _missing_file_message(repo_id: str, revision: str | None, filename: str, token: str | bool | None) -> str:
    where = f"{repo_id}@{revision or 'main'}"
    try:
        names = HfApi(token=token).list_repo_files(repo_id, revision=revision)
    except Exception:  # the listing is only for a better message
        names = []
    if filename == WEIGHTS_FILE or (WEIGHTS_FILE not in names and any(n.endswith(PICKLE_SUFFIXES) for n in names)):
        return _missing_weights_message(where, names)
    return (
        f"{where}: the repo has no {filename} (files: {names[:20]}); it was not written by "
        "deepgaze-hub's save_pretrained/push_to_hub"
    )


def _missing_weights_message(where: str, names: list[str]) -> str:
    pickles = [name for name in names if name.endswith(PICKLE_SUFFIXES)]
    if pickles:
        return (
            f"{where}: no {WEIGHTS_FILE}, only pickle files {pickles}. deepgaze-hub never unpickles "
            "downloaded files (they can run arbitrary code); ask the publisher for safetensors, or "
            "convert a file you trust yourself with safetensors.torch.save_file."
        )
    return f"{where}: no {WEIGHTS_FILE} (files: {names[:20]}); save the model with save_pretrained"
