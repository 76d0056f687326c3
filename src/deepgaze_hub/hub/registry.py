"""The registry of named models: one YAML file per model in ``hub_configs/``.

An entry (``hub_configs/<name>.yaml``, ``format_version: 1``) is data:

* ``name``, ``title``, ``description``, ``paper``;
* ``architecture``: the model's `DeepGazeConfig` as a mapping (what ``config.json`` holds), which
  names the backbone and its torchvision weights enum (``backbone.weights``);
* ``hub``: ``repo_id``, ``revision`` (a full 40-digit commit hash, or null while the model is
  declared but not published) and ``files`` (``{file name: sha256}`` of ``config.json`` and
  ``model.safetensors`` at that revision);
* ``recipe``: the training recipe that produced it, a path under ``hub_configs/``;
* ``datasets``, ``training``, ``evaluation`` (rows of dataset, split, metric, value, unit),
  ``licenses``: what its model card states.

A model with another torchvision backbone is another entry with another ``architecture``. A
multi-backbone mixture (DeepGaze IIE) would be an entry listing several architecture + hub pairs,
mixed with equal weights: that needs a mixture model class and registry format 2 (not yet).

The registry is found in the installed package (``deepgaze_hub/hub_configs``, shipped in the
wheel) or, in a source checkout and an editable install, at the repository root.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import DeepGazeError
from ..model.config import ConfigError, DeepGazeConfig
from ..model.deepgaze import DeepGaze
from ..model.serialization import CONFIG_FILE, WEIGHTS_FILE, keep_members, load_model_files, read_config
from .card import EvaluationResult, ModelCardInfo
from .download import resolve_model_files
from .integrity import verify_sha256

#: Layout version of registry entries. Bump it when a field changes meaning.
REGISTRY_FORMAT_VERSION = 1
REGISTRY_DIRNAME = "hub_configs"
PINNED_FILES = (CONFIG_FILE, WEIGHTS_FILE)

_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIELDS = {
    "format_version", "name", "title", "description", "paper", "architecture", "hub", "recipe",
    "datasets", "training", "evaluation", "licenses",
}  # fmt: skip
_HUB_FIELDS = {"repo_id", "revision", "files"}


class RegistryError(DeepGazeError, ValueError):
    """A registry entry that is missing, malformed or inconsistent; the message names the file."""


class ModelNotPublishedError(RegistryError):
    """The model is declared in the registry but its weights have not been published yet."""


@dataclass(frozen=True)
class HubPin:
    """Where a published model lives: repo, pinned commit and the sha256 of each file read."""

    repo_id: str
    revision: str | None = None
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryEntry:
    """One parsed ``hub_configs/<name>.yaml`` (see the module docstring for the fields)."""

    name: str
    title: str
    description: str
    architecture: dict[str, Any]
    hub: HubPin
    path: Path
    recipe: str | None = None
    paper: str | None = None
    datasets: list[str] = field(default_factory=list)
    training: str | None = None
    evaluation: list[EvaluationResult] = field(default_factory=list)
    licenses: dict[str, str] = field(default_factory=dict)

    @property
    def published(self) -> bool:
        return self.hub.revision is not None

    @property
    def entry_point(self) -> str:
        """The name of this model's function in hubconf.py (``-`` becomes ``_``)."""
        return self.name.replace("-", "_")

    def config(self, overrides: dict[str, Any] | None = None) -> DeepGazeConfig:
        """The architecture with ``overrides`` (config fields; ``backbone`` may be a partial mapping)."""
        data = _with_overrides(self.architecture, overrides or {})
        try:
            return DeepGazeConfig.from_dict(data)
        except ConfigError as error:
            raise ConfigError(f"{self.name}: {error}") from error

    def card_info(self) -> ModelCardInfo:
        """What this entry says for a model card (evaluation only if the weights are published)."""
        return ModelCardInfo(
            name=self.name,
            title=self.title,
            summary=self.description,
            datasets=list(self.datasets),
            recipe=self.recipe,
            training=self.training,
            evaluation=list(self.evaluation) if self.published else [],
            licenses=dict(self.licenses),
            repo_id=self.hub.repo_id,
        )


class Registry:
    """The named models of a ``hub_configs`` directory (default: the one of this installation)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_directory()
        if not self.directory.is_dir():
            raise RegistryError(f"model registry {self.directory} does not exist or is not a directory")

    def names(self) -> list[str]:
        return sorted(path.stem for path in self.directory.glob("*.yaml"))

    def entries(self) -> list[RegistryEntry]:
        return [self.get(name) for name in self.names()]

    def get(self, name: str) -> RegistryEntry:
        """The entry ``name`` (``deepgaze2-vgg19``; the hubconf spelling ``deepgaze2_vgg19`` works too)."""
        canonical = name.replace("_", "-")
        path = self.directory / f"{canonical}.yaml"
        if not path.is_file():
            raise RegistryError(f"no model named {name!r} in the registry {self.directory}; known: {self.names()}")
        return parse_entry(path)

    def load(
        self,
        name: str,
        pretrained: bool = True,
        members: Sequence[int] | None = None,
        *,
        map_location: str | torch.device = "cpu",
        **overrides: Any,
    ) -> DeepGaze:
        """See `load`."""
        entry = self.get(name)
        if not pretrained:
            model = DeepGaze(entry.config(overrides))
            model.card_info = entry.card_info()
            if members is not None:
                model = keep_members(model, members)
            return model.to(map_location)
        if not entry.published:
            recipe = self.directory / entry.recipe if entry.recipe else None
            how = f"`deepgaze-hub train --config {recipe}`" if recipe else "a training recipe"
            raise ModelNotPublishedError(
                f"{entry.name} is declared in the registry ({entry.path}) but its weights are not published "
                f"yet: no revision of {entry.hub.repo_id} is pinned. Train it with {how}, publish the result "
                "with `deepgaze-hub push MODEL_DIR REPO_ID` and pin the printed revision and sha256 in the "
                "entry; or load the untrained architecture with pretrained=False."
            )
        return _load_published(entry, members, overrides, map_location)


def default_directory() -> Path:
    """The registry of this installation: inside the package (wheel) or at the checkout's root."""
    package = Path(__file__).resolve().parent.parent  # .../deepgaze_hub
    for candidate in (package / REGISTRY_DIRNAME, package.parent.parent / REGISTRY_DIRNAME):
        if candidate.is_dir():
            return candidate
    raise RegistryError(
        f"the model registry ({REGISTRY_DIRNAME}/) is missing from this installation ({package}); "
        "reinstall deepgaze-hub, or pass registry=<path to a hub_configs directory>"
    )


def list_models(*, published_only: bool = False, registry: str | Path | None = None) -> list[str]:
    """Names of the models in the registry, sorted; ``published_only`` drops declared-only ones."""
    entries = Registry(registry).entries()
    return [entry.name for entry in entries if entry.published or not published_only]


def load(
    name: str,
    pretrained: bool = True,
    members: Sequence[int] | None = None,
    *,
    registry: str | Path | None = None,
    map_location: str | torch.device = "cpu",
    **overrides: Any,
) -> DeepGaze:
    """The registry model ``name`` (see `list_models`), ready to use.

    Args:
        pretrained: download the published weights at the pinned revision and check their sha256
            (``HF_HUB_OFFLINE=1`` works once they are cached); ``False`` builds the untrained
            architecture (random readout, backbone weights from torchvision).
        members: keep only these ensemble members, in this order (e.g. ``[3]``); ``None``: all.
        registry: another ``hub_configs`` directory; default: this installation's.
        map_location: device of the returned model.
        overrides: `DeepGazeConfig` fields to change; ``backbone`` may be a partial mapping, e.g.
            ``backbone={"weights": "/path/vgg19.safetensors"}``. With ``pretrained=True`` they must
            keep the tensors' shapes (weights are loaded strictly).

    Returns a `DeepGaze` in eval mode (``pretrained=True``) or as constructed (``False``).
    """
    return Registry(registry).load(name, pretrained, members, map_location=map_location, **overrides)


def parse_entry(path: str | Path) -> RegistryEntry:
    """Read and validate one registry file; `RegistryError` names the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise RegistryError(f"cannot read registry entry {path}: {error}") from error
    if not isinstance(data, dict):
        raise RegistryError(f"registry entry {path} is not a YAML mapping")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise RegistryError(f"{path}: unknown fields {unknown}; known: {sorted(_FIELDS)}")
    version = data.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= REGISTRY_FORMAT_VERSION:
        raise RegistryError(
            f"{path}: format_version {version!r} is not one this deepgaze-hub reads "
            f"(1 to {REGISTRY_FORMAT_VERSION}); upgrade with `pip install -U deepgaze-hub`"
        )
    if data.get("name") != path.stem:
        raise RegistryError(f"{path}: name {data.get('name')!r} must equal the file name {path.stem!r}")
    if not isinstance(data.get("architecture"), dict):
        raise RegistryError(f"{path}: architecture must be a mapping of DeepGazeConfig fields")
    try:
        evaluation = [EvaluationResult(**row) for row in data.get("evaluation") or []]
    except TypeError as error:
        raise RegistryError(f"{path}: evaluation rows need dataset, metric, value [, split, unit] ({error})") from None
    entry = RegistryEntry(
        name=path.stem,
        title=str(data.get("title") or path.stem),
        description=str(data.get("description") or "").strip(),
        architecture=data["architecture"],
        hub=_parse_hub(data.get("hub"), path),
        path=path,
        recipe=data.get("recipe"),
        paper=data.get("paper"),
        datasets=[str(name) for name in data.get("datasets") or []],
        training=data.get("training"),
        evaluation=evaluation,
        licenses={str(k): str(v) for k, v in (data.get("licenses") or {}).items()},
    )
    try:
        DeepGazeConfig.from_dict(entry.architecture)
    except ConfigError as error:
        raise RegistryError(f"{path}: architecture: {error}") from None
    return entry


def _parse_hub(hub: Any, path: Path) -> HubPin:
    if not isinstance(hub, dict) or not isinstance(hub.get("repo_id"), str) or "/" not in hub["repo_id"]:
        raise RegistryError(f"{path}: hub needs repo_id: <owner>/<name>")
    unknown = sorted(set(hub) - _HUB_FIELDS)
    if unknown:
        raise RegistryError(f"{path}: unknown hub fields {unknown}; known: {sorted(_HUB_FIELDS)}")
    revision, files = hub.get("revision"), dict(hub.get("files") or {})
    if revision is None:
        return HubPin(hub["repo_id"], None, files)
    if not isinstance(revision, str) or not _COMMIT.fullmatch(revision):
        raise RegistryError(
            f"{path}: hub.revision must be a full 40-digit commit hash (branches and tags can move), got {revision!r}"
        )
    missing = [name for name in PINNED_FILES if name not in files]
    malformed = [name for name, digest in files.items() if not (isinstance(digest, str) and _SHA256.fullmatch(digest))]
    if missing or malformed:
        raise RegistryError(
            f"{path}: a published entry pins the sha256 (64 hex digits) of {list(PINNED_FILES)}; "
            f"missing {missing}, malformed {malformed}"
        )
    return HubPin(hub["repo_id"], revision, files)


def _load_published(
    entry: RegistryEntry, members: Sequence[int] | None, overrides: dict[str, Any], map_location
) -> DeepGaze:
    where = f"{entry.name} ({entry.hub.repo_id}@{entry.hub.revision})"
    paths = dict(zip(PINNED_FILES, resolve_model_files(entry.hub.repo_id, revision=entry.hub.revision)))
    for filename, path in paths.items():
        verify_sha256(path, entry.hub.files[filename], where)
    published = read_config(paths[CONFIG_FILE], where).to_dict()
    declared = entry.config().to_dict()
    if published != declared:
        raise RegistryError(
            f"{where}: the architecture in {entry.path} differs from the published config.json in "
            f"{_differences(declared, published)}; fix the registry entry"
        )
    return load_model_files(
        DeepGaze,
        entry.config(overrides),
        paths[WEIGHTS_FILE],
        where=where,
        members=members,
        map_location=map_location,
        card_info=entry.card_info(),
    )


def _with_overrides(architecture: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in architecture.items()}
    for key, value in overrides.items():
        if is_dataclass(value):
            value = asdict(value)
        if key == "backbone" and isinstance(value, dict):
            data["backbone"] = {**data.get("backbone", {}), **value}
        else:
            data[key] = value
    return data


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out: list[str] = []
    for key in keys:
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            out += _differences(left, right, f"{prefix}{key}.")
        elif left != right:
            out.append(f"{prefix}{key}: registry {left!r}, published {right!r}")
    return out
