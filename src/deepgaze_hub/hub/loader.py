"""`load`: the one way to get a model by name, and `ModelSource`: what a name means.

A model is named in one of three ways, and the name says which (nothing is guessed):

* a registry name, ``deepgaze2-vgg19`` (``deepgaze2_vgg19`` too): a pinned, checksummed release
  listed by ``deepgaze-hub list``;
* ``hf-hub:owner/name`` or ``hf-hub:owner/name@revision``: a Hugging Face Hub repo written by
  ``push_to_hub`` (pin ``revision`` to a full commit hash for reproducible results);
* anything else (a string or a `pathlib.Path`): a local directory written by ``save_pretrained``.
  A registry name wins over a directory of the same name: write ``./deepgaze2-vgg19`` for that.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import ConfigError, WeightsError
from ..model.config import apply_overrides
from ..model.deepgaze import DeepGaze
from ..model.files import ModelFiles, hub_model_files, local_model_files, read_config
from .registry import Registry

HF_HUB_PREFIX = "hf-hub:"
#: What ``--model`` of the command line accepts, for its help text.
MODEL_HELP = (
    "a registry name (`deepgaze-hub list`, e.g. deepgaze2-vgg19), hf-hub:OWNER/NAME[@REVISION] "
    "for a Hugging Face Hub repo, or the path of a directory written by save_pretrained"
)

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from; `parse` turns the text a user writes into one.

    Attributes:
        kind: ``"registry"``, ``"hf-hub"`` or ``"local"``.
        name: the registry name (``kind == "registry"``), as the registry spells it.
        repo_id: ``owner/name`` (``kind == "hf-hub"``).
        revision: branch, tag or commit of the repo, if the text named one (``kind == "hf-hub"``).
        path: the directory (``kind == "local"``); not checked to exist by `parse`.
    """

    kind: Literal["registry", "hf-hub", "local"]
    name: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    path: Path | None = None

    @classmethod
    def parse(cls, text: str | Path, *, registry: str | Path | None = None) -> ModelSource:
        """The source ``text`` names (see the module docstring); ``registry``: another hub_configs directory.

        Raises `ConfigError` for a malformed ``hf-hub:`` name.
        """
        if isinstance(text, Path):
            return cls("local", path=text.expanduser())
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"a model must be named by a non-empty string or a path, got {text!r}. {MODEL_HELP}")
        if text.startswith(HF_HUB_PREFIX):
            spec = text[len(HF_HUB_PREFIX) :]
            repo_id, at, revision = spec.partition("@")
            if not _REPO_ID.fullmatch(repo_id) or (at and not revision):
                raise ConfigError(
                    f"{text!r} is not a Hub model: write hf-hub:OWNER/NAME or hf-hub:OWNER/NAME@REVISION "
                    "(REVISION a branch, tag or commit hash)"
                )
            return cls("hf-hub", repo_id=repo_id, revision=revision or None)
        if "/" not in text and "\\" not in text and not text.startswith((".", "~")):
            name = Registry(registry).canonical(text)
            if name is not None:
                return cls("registry", name=name)
        return cls("local", path=Path(text).expanduser())

    def __str__(self) -> str:
        if self.kind == "registry":
            return str(self.name)
        if self.kind == "hf-hub":
            return f"{HF_HUB_PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")
        return str(self.path)


def load(
    model: str | Path | ModelSource,
    *,
    revision: str | None = None,
    members: Sequence[int] | None = None,
    map_location: str | torch.device = "cpu",
    pretrained: bool = True,
    registry: str | Path | None = None,
    **config_overrides: Any,
) -> DeepGaze:
    """The model named ``model``, ready to use (in eval mode).

    Args:
        model: a registry name (``"deepgaze2-vgg19"``), ``"hf-hub:owner/name[@revision]"``, a
            directory written by ``save_pretrained`` (a `pathlib.Path` or any other string), or a
            `ModelSource`.
        revision: for ``hf-hub:`` names, the branch, tag or commit to load (the same as
            ``@revision`` in the name). Registry models are pinned and local directories have
            none: giving one for them is an error.
        members: keep only these ensemble members, in this order (e.g. ``[3]``); ``None``: all.
        map_location: device of the returned model.
        pretrained: ``False`` builds a registry model's untrained architecture (random readout,
            backbone weights from torchvision); only for registry names.
        registry: another ``hub_configs`` directory to look names up in; default: this installation's.
        config_overrides: `DeepGazeConfig` fields to change, e.g. ``resize_mode="antialias"``;
            ``backbone`` may be a partial mapping, e.g. ``backbone={"weights": "/path/vgg19.safetensors"}``.
            With pretrained weights they must keep the tensors' shapes (weights are loaded strictly).

    Registry models are downloaded at their pinned revision and their files checked against the
    pinned sha256 (``HF_HUB_OFFLINE=1`` works once they are cached). Only ``config.json`` and
    ``model.safetensors`` are ever read; nothing is unpickled.

    Raises:
        ConfigError: a malformed name, a bad ``config.json``, overrides or arguments that do not fit.
        WeightsError: files that are missing, unreachable, tampered with or inconsistent
            (`ModelNotPublishedError` for a registry model whose weights are not published yet).
    """
    source = model if isinstance(model, ModelSource) else ModelSource.parse(model, registry=registry)
    if source.kind == "registry":
        if revision is not None:
            raise ConfigError(
                f"{source.name} is a registry model, pinned to one revision; to load another revision, "
                f"name its repo as hf-hub:OWNER/NAME@REVISION (see `deepgaze-hub list`)"
            )
        table = Registry(registry)
        return table.load(source.name, pretrained, members, map_location=map_location, **config_overrides)
    if not pretrained:
        raise ConfigError(
            f"pretrained=False builds the untrained architecture of a registry model; {source} is not one "
            "(for an untrained model, build DeepGaze(DeepGazeConfig(...)))"
        )
    files = _hub_files(source, revision) if source.kind == "hf-hub" else _local_files(source, revision)
    config = read_config(files.config, files.where)
    if config_overrides:
        config = apply_overrides(config, config_overrides, where=files.where)
    return DeepGaze.from_files(config, files.weights, where=files.where, members=members, map_location=map_location)


def _hub_files(source: ModelSource, revision: str | None) -> ModelFiles:
    if revision is not None and source.revision is not None and revision != source.revision:
        raise ConfigError(f"{source} names revision {source.revision!r} but revision={revision!r} was passed")
    return hub_model_files(str(source.repo_id), revision=revision or source.revision)


def _local_files(source: ModelSource, revision: str | None) -> ModelFiles:
    path = Path(str(source.path))
    if revision is not None:
        raise ConfigError(
            f"revision={revision!r} applies to Hub repos; {path} is a local directory "
            "(for a repo, write hf-hub:OWNER/NAME)"
        )
    if not path.exists():
        hint = ""
        if _REPO_ID.fullmatch(str(path)):
            hint = f" If you meant the Hugging Face Hub repo {path}, write hf-hub:{path}."
        elif "/" not in str(path):
            hint = " It is not a registry name either (`deepgaze-hub list` shows them)."
        raise WeightsError(f"no model directory {path}: it does not exist.{hint}")
    return local_model_files(path)
