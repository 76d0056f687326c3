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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, ModelNotPublishedError
from ..io.typed import bounded, parse, read_yaml, validate
from ..model.card import CardMetric, ModelCardInfo
from ..model.config import DeepGazeConfig, apply_overrides
from ..model.deepgaze import DeepGaze
from ..model.files import CONFIG_FILE, MODEL_FILES, hub_model_files, read_config
from .integrity import verify_sha256

#: Layout version of registry entries. Bump it when a field changes meaning.
REGISTRY_FORMAT_VERSION = 1
REGISTRY_DIRNAME = "hub_configs"
#: The files whose sha256 a published entry pins.
PINNED_FILES = MODEL_FILES

_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


@dataclass(frozen=True)
class HubPin:
    """Where a published model lives: repo, pinned commit and the sha256 of each file read."""

    repo_id: str = bounded(min_len=3, max_len=200, help="the Hugging Face repo, owner/name")
    revision: str | None = bounded(None, max_len=100, help="full 40-digit commit hash, null until published")
    files: dict[str, str] = bounded(
        default_factory=dict, max_len=len(PINNED_FILES), help="sha256 of config.json and model.safetensors"
    )

    def __post_init__(self) -> None:
        validate(self, "hub")

    def problems(self) -> list[str]:
        """What is wrong beyond types and lengths (empty if nothing)."""
        if not _REPO_ID.fullmatch(self.repo_id):
            return [f"hub needs repo_id: <owner>/<name>, got {self.repo_id!r}"]
        unknown = sorted(set(self.files) - set(PINNED_FILES))
        if unknown:
            return [f"hub.files pins {unknown}; only {list(PINNED_FILES)} are read"]
        if self.revision is None:
            return []
        if not _COMMIT.fullmatch(self.revision):
            return [
                "hub.revision must be a full 40-digit commit hash (branches and tags can move), "
                f"got {self.revision!r}"
            ]
        missing = [name for name in PINNED_FILES if name not in self.files]
        malformed = [name for name, digest in self.files.items() if not _SHA256.fullmatch(digest)]
        if missing or malformed:
            return [
                f"a published entry pins the sha256 (64 hex digits) of {list(PINNED_FILES)}; "
                f"missing {missing}, malformed {malformed}"
            ]
        return []


@dataclass(frozen=True)
class RegistryEntry:
    """One parsed ``hub_configs/<name>.yaml`` (see the module docstring for the fields).

    ``path`` is the file it was read from (not a field of the file).
    """

    name: str = bounded(min_len=1, max_len=100, help="the model's name, equal to the file name")
    architecture: dict[str, Any] = bounded(max_len=100, help="the DeepGazeConfig, as in config.json")
    hub: HubPin = bounded(help="repo, pinned revision and sha256 of the files")
    format_version: int = bounded(REGISTRY_FORMAT_VERSION, ge=1, le=REGISTRY_FORMAT_VERSION, help="entry layout")
    title: str = bounded("", max_len=200, help="one-line title")
    description: str = bounded("", max_len=10_000, help="a paragraph on the model")
    paper: str | None = bounded(None, max_len=500, help="URL of the paper")
    recipe: str | None = bounded(None, min_len=1, max_len=500, help="training recipe, a path under hub_configs/")
    datasets: list[str] = bounded(default_factory=list, max_len=100, help="training datasets")
    training: str | None = bounded(None, max_len=10_000, help="how it was trained")
    evaluation: list[CardMetric] = bounded(default_factory=list, max_len=1000, help="evaluation table rows")
    licenses: dict[str, str] = bounded(default_factory=dict, max_len=100, help="extra terms, {what: licence}")
    path: Path = field(default=Path(), init=False, compare=False)

    def __post_init__(self) -> None:
        validate(self, "registry entry")

    @property
    def published(self) -> bool:
        return self.hub.revision is not None

    @property
    def entry_point(self) -> str:
        """The name of this model's function in hubconf.py (``-`` becomes ``_``)."""
        return self.name.replace("-", "_")

    def config(self, overrides: dict[str, Any] | None = None) -> DeepGazeConfig:
        """The architecture with ``overrides`` (config fields; ``backbone`` may be a partial mapping)."""
        return apply_overrides(self.architecture, overrides or {}, where=f"{self.path}: architecture")

    def card_info(self) -> ModelCardInfo:
        """What this entry says for a model card (evaluation only if the weights are published)."""
        return ModelCardInfo(
            name=self.name,
            title=self.title or self.name,
            summary=self.description.strip(),
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
            raise ConfigError(f"model registry {self.directory} does not exist or is not a directory")

    def names(self) -> list[str]:
        return sorted(path.stem for path in self.directory.glob("*.yaml"))

    def entries(self) -> list[RegistryEntry]:
        return [self.get(name) for name in self.names()]

    def canonical(self, name: str) -> str | None:
        """``name`` as the registry spells it (``deepgaze2_vgg19`` -> ``deepgaze2-vgg19``), or None."""
        canonical = name.replace("_", "-")
        return canonical if canonical in self.names() else None

    def get(self, name: str) -> RegistryEntry:
        """The entry ``name`` (``deepgaze2-vgg19``; the hubconf spelling ``deepgaze2_vgg19`` works too)."""
        canonical = self.canonical(name)
        if canonical is None:
            raise ConfigError(f"no model named {name!r} in the registry {self.directory}; known: {self.names()}")
        return parse_entry(self.directory / f"{canonical}.yaml")

    def load(
        self,
        name: str,
        pretrained: bool = True,
        members: Sequence[int] | None = None,
        *,
        map_location: str | torch.device = "cpu",
        **overrides: Any,
    ) -> DeepGaze:
        """The model ``name``; see `deepgaze_hub.hub.load`, which is how to call this."""
        entry = self.get(name)
        if not pretrained:
            model = DeepGaze(entry.config(overrides))
            model.card_info = entry.card_info()
            if members is not None:
                model = model.select_members(members)
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
    raise ConfigError(
        f"the model registry ({REGISTRY_DIRNAME}/) is missing from this installation ({package}); "
        "reinstall deepgaze-hub, or pass registry=<path to a hub_configs directory>"
    )


def list_models(*, published_only: bool = False, registry: str | Path | None = None) -> list[str]:
    """Names of the models in the registry, sorted; ``published_only`` drops declared-only ones."""
    entries = Registry(registry).entries()
    return [entry.name for entry in entries if entry.published or not published_only]


def parse_entry(path: str | Path) -> RegistryEntry:
    """Read and check one registry file; `ConfigError` names the file, the field and what it allows."""
    path = Path(path)
    where = str(path)
    data = read_yaml(path, "registry entry")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a registry entry must be a YAML mapping, got {type(data).__name__}")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= REGISTRY_FORMAT_VERSION:
        raise ConfigError(
            f"{where}: format_version {version!r} is not one this deepgaze-hub reads "
            f"(1 to {REGISTRY_FORMAT_VERSION}); upgrade with `pip install -U deepgaze-hub`"
        )
    entry = parse(RegistryEntry, data, where)
    object.__setattr__(entry, "path", path)
    if entry.name != path.stem:
        raise ConfigError(f"{where}: name {entry.name!r} must equal the file name {path.stem!r}")
    problems = entry.hub.problems()
    if problems:
        raise ConfigError(f"{where}: {problems[0]}")
    DeepGazeConfig.from_dict(entry.architecture, f"{where}: architecture")
    return entry


def _load_published(
    entry: RegistryEntry, members: Sequence[int] | None, overrides: dict[str, Any], map_location
) -> DeepGaze:
    files = hub_model_files(entry.hub.repo_id, revision=entry.hub.revision)
    where = f"{entry.name} ({files.where})"
    for path in (files.config, files.weights):
        verify_sha256(path, entry.hub.files[path.name], where)
    published = read_config(files.config, where).to_dict()
    declared = entry.config().to_dict()
    if published != declared:
        raise ConfigError(
            f"{where}: the architecture in {entry.path} differs from the published {CONFIG_FILE} in "
            f"{_differences(declared, published)}; fix the registry entry"
        )
    return DeepGaze.from_files(
        entry.config(overrides),
        files.weights,
        where=where,
        members=members,
        map_location=map_location,
        card_info=entry.card_info(),
    )


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
