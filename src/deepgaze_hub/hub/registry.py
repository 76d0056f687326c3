"""The registry of named models: one YAML file per model in ``hub_configs/``.

An entry (``hub_configs/<name>.yaml``) is data, in one of two kinds:

* a model published by this project on the Hugging Face Hub (``format_version: 1`` or 2):
  ``architecture``, the model's `DeepGazeConfig` as a mapping (what ``config.json`` holds), which
  names the backbone and its torchvision weights enum (``backbone.weights``); and ``hub``:
  ``repo_id``, ``revision`` (a full 40-digit commit hash, or null while the model is declared but
  not published) and ``files`` (``{file name: sha256}`` of ``config.json`` and
  ``model.safetensors`` at that revision); ``recipe``: the training recipe that produced it, a path
  under ``hub_configs/``;
* a release file of the DeepGaze authors, converted on first use (``format_version: 2``):
  ``release``: ``url``, ``sha256`` (null: not pinned; the sha256 of what was downloaded is printed
  with how to pin it, and a pinned one is enforced), ``converter`` (``deepgaze1`` or
  ``deepgaze2e``, the published layout) and ``centerbias`` (``url``, ``sha256``). The architecture
  is the converter's; see `deepgaze_hub.hub.release`.

Both kinds have ``name``, ``title``, ``description``, ``paper``, ``citation`` (BibTeX),
``datasets`` (names), ``dataset_ids`` (their Hub dataset ids, only where they exist),
``base_model`` (Hub model ids it derives from), ``training``, ``evaluation`` (rows of dataset,
split, metric, value, unit, optional ``dataset_id`` and ``centre_bias`` settings) and
``licenses``: what the model card states.

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
from .release import ReleaseSource, load_release

#: Layout version of registry entries. Bump it when a field changes meaning (2: ``release:`` entries).
REGISTRY_FORMAT_VERSION = 2
#: The first format that has ``release:`` entries.
RELEASE_FORMAT_VERSION = 2
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
    architecture: dict[str, Any] | None = bounded(None, max_len=100, help="the DeepGazeConfig, as in config.json")
    hub: HubPin | None = bounded(None, help="repo, pinned revision and sha256 of the files")
    release: ReleaseSource | None = bounded(None, help="the authors' release file and its converter")
    format_version: int = bounded(REGISTRY_FORMAT_VERSION, ge=1, le=REGISTRY_FORMAT_VERSION, help="entry layout")
    title: str = bounded("", max_len=200, help="one-line title")
    description: str = bounded("", max_len=10_000, help="a paragraph on the model")
    paper: str | None = bounded(None, max_len=500, help="URL of the paper")
    citation: str | None = bounded(None, max_len=5000, help="how to cite the model (BibTeX)")
    recipe: str | None = bounded(None, min_len=1, max_len=500, help="training recipe, a path under hub_configs/")
    datasets: list[str] = bounded(default_factory=list, max_len=100, help="training datasets")
    dataset_ids: list[str] = bounded(default_factory=list, max_len=100, help="Hub dataset ids of that data, where it has them")
    base_model: list[str] = bounded(default_factory=list, max_len=20, help="Hub model ids it was fine-tuned or converted from")
    training: str | None = bounded(None, max_len=10_000, help="how it was trained")
    evaluation: list[CardMetric] = bounded(default_factory=list, max_len=1000, help="evaluation table rows")
    licenses: dict[str, str] = bounded(default_factory=dict, max_len=100, help="extra terms, {what: licence}")
    path: Path = field(default=Path(), init=False, compare=False)

    def __post_init__(self) -> None:
        validate(self, "registry entry")

    @property
    def published(self) -> bool:
        """Whether weights can be loaded: a pinned Hub revision, or a release file."""
        return self.release is not None or (self.hub is not None and self.hub.revision is not None)

    @property
    def status(self) -> str:
        """``published@<commit>``, ``declared`` or ``release`` (``release, pinned`` with a sha256)."""
        if self.release is not None:
            return "release, pinned" if self.release.sha256 else "release"
        return f"published@{self.hub.revision[:12]}" if self.published else "declared"

    @property
    def entry_point(self) -> str:
        """The name of this model's function in hubconf.py (``-`` becomes ``_``)."""
        return self.name.replace("-", "_")

    def config(self, overrides: dict[str, Any] | None = None) -> DeepGazeConfig:
        """The architecture with ``overrides`` (config fields; ``backbone`` may be a partial mapping).

        A release entry has none until converted: `ConfigError`.
        """
        if self.architecture is None:
            raise ConfigError(
                f"{self.name} is converted from the authors' release file: its architecture is the "
                f"converter's; load it with deepgaze_hub.load({self.name!r}) and read model.config"
            )
        return apply_overrides(self.architecture, overrides or {}, where=f"{self.path}: architecture")

    def card_info(self) -> ModelCardInfo:
        """What this entry says for a model card (evaluation only if the weights are published)."""
        return ModelCardInfo(
            name=self.name,
            title=self.title or self.name,
            summary=self.description.strip(),
            citation=self.citation.strip() if self.citation else None,
            datasets=list(self.datasets),
            dataset_ids=list(self.dataset_ids),
            base_model=list(self.base_model),
            recipe=self.recipe,
            training=self.training,
            evaluation=list(self.evaluation) if self.published else [],
            licenses=dict(self.licenses),
            repo_id=self.hub.repo_id if self.hub is not None else None,
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
        if entry.release is not None:
            if not pretrained:
                raise ConfigError(
                    f"{entry.name} is converted from the authors' release file; it has no untrained "
                    "architecture to build here (pretrained=False); load it with pretrained=True"
                )
            return load_release(
                entry.name, entry.release, entry.card_info(), members=members,
                map_location=map_location, entry_path=entry.path, **overrides,
            )  # fmt: skip
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
    problems = _kind_problems(entry, version)
    if problems:
        raise ConfigError(f"{where}: {problems[0]}")
    if entry.architecture is not None:
        DeepGazeConfig.from_dict(entry.architecture, f"{where}: architecture")
    return entry


def _kind_problems(entry: RegistryEntry, version: int) -> list[str]:
    """An entry is either hub + architecture or release alone; then the section's own checks."""
    if entry.release is not None:
        if entry.hub is not None or entry.architecture is not None or entry.recipe is not None:
            return ["an entry with release: has no hub:, architecture: or recipe: (the converter sets them)"]
        if version < RELEASE_FORMAT_VERSION:
            return [f"release: entries need format_version: {RELEASE_FORMAT_VERSION}"]
        return entry.release.problems()
    if entry.hub is None or entry.architecture is None:
        return ["an entry needs hub: and architecture: (a published model) or release: (an authors' release file)"]
    return entry.hub.problems()


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
