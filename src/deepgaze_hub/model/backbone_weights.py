"""Backbone weights from a Hugging Face Hub repo, as safetensors: no pickle anywhere in a model.

A backbone's ``weights`` may name the ``model.safetensors`` of a Hub model repo, pinned to a commit
and to the file's sha256::

    backbone:
      name: vgg19
      weights: "hf-hub:timm/vgg19.tv_in1k@<40-hex commit>?sha256=<64-hex sha256>"

``timm/vgg19.tv_in1k`` is torchvision's ImageNet VGG-19 (``IMAGENET1K_V1``) re-published by timm
as safetensors. The file is downloaded once into the Hugging Face cache (offline mode,
``HF_HUB_OFFLINE=1``, reads the cache only), its sha256 is checked on every load, and its tensors
are mapped to torchvision's key layout: timm's VGG keeps torchvision's ``features.<i>`` keys and
names the classifier ``pre_logits.fc1`` and ``pre_logits.fc2`` (stored as 7x7 and 1x1
convolutions) and ``head.fc``; these become torchvision's ``classifier.0``, ``classifier.3`` and
``classifier.6`` (as linear layers). A file whose keys already are torchvision's is used as it is.
Every tensor must then be one of torchvision's network ``name``, with its shape, else
`WeightsError` lists what is unexpected or misshapen; a tensor the backbone needs (the layers up
to the last tapped one) but the file lacks is reported by `build_backbone`. torchvision's own ``.pth`` files (weights enum
names such as ``IMAGENET1K_V1``) stay the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError, safe_open

from ..errors import ConfigError, WeightsError
from ..io.download import file_sha256
from .files import compare_layout

#: ``BackboneConfig.weights`` starting with this names a Hub repo's safetensors file.
HUB_WEIGHTS_PREFIX = "hf-hub:"
#: The file read from the repo.
HUB_WEIGHTS_FILE = "model.safetensors"
EXAMPLE = "hf-hub:timm/vgg19.tv_in1k@<40-hex commit>?sha256=<64-hex sha256 of model.safetensors>"
_SPEC = re.compile(
    r"hf-hub:(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)@(?P<revision>[0-9a-f]{40})\?sha256=(?P<sha256>[0-9a-f]{64})"
)
#: timm's VGG classifier keys -> torchvision's, with the shape torchvision's linear layers use.
_TIMM_VGG_CLASSIFIER = {"pre_logits.fc1": "classifier.0", "pre_logits.fc2": "classifier.3", "head.fc": "classifier.6"}


@dataclass(frozen=True)
class HubWeights:
    """A pinned safetensors file of a Hub repo: ``hf-hub:<repo_id>@<revision>?sha256=<sha256>``."""

    repo_id: str
    revision: str
    sha256: str

    @classmethod
    def parse(cls, spec: str) -> HubWeights:
        """`ConfigError` unless ``spec`` names a repo, a full commit hash and a sha256 (see `EXAMPLE`)."""
        match = _SPEC.fullmatch(spec)
        if match is None:
            raise ConfigError(
                f"backbone weights {spec!r}: Hub weights must be pinned to a commit and the file's sha256, "
                f"as {EXAMPLE} (the commit and the sha256 are shown on the file's page on the Hub)"
            )
        return cls(match["repo"], match["revision"], match["sha256"])

    def __str__(self) -> str:
        return f"{HUB_WEIGHTS_PREFIX}{self.repo_id}@{self.revision}?sha256={self.sha256}"


def is_hub_weights(weights: str | None) -> bool:
    """Whether a ``BackboneConfig.weights`` value names Hub weights (``hf-hub:...``)."""
    return isinstance(weights, str) and weights.startswith(HUB_WEIGHTS_PREFIX)


def hub_repo_id(weights: str | None) -> str | None:
    """The repo id in Hub weights (``owner/name``, not checked further), else None."""
    if not is_hub_weights(weights):
        return None
    return weights[len(HUB_WEIGHTS_PREFIX):].split("@")[0].split("?")[0] or None


def load_hub_backbone_state(spec: str, name: str) -> dict[str, torch.Tensor]:
    """The state dict of torchvision's network ``name`` from the Hub weights ``spec``.

    Downloads (or finds in the cache) the pinned file, checks its sha256, reads it with
    safetensors and maps timm's layout to torchvision's (see the module docstring).
    """
    weights = HubWeights.parse(spec)
    path = download_hub_weights(weights)
    actual = file_sha256(path)
    if actual != weights.sha256:
        raise WeightsError(
            f"{spec}: {HUB_WEIGHTS_FILE} has sha256 {actual}, but {weights.sha256} is pinned. The local copy "
            f"{Path(path).resolve()} is damaged or was modified, or the pin is wrong: delete that file and load again."
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{spec}: {HUB_WEIGHTS_FILE} is not a readable safetensors file ({error})") from None
    state = to_torchvision_layout(state)
    check_layout(state, name, spec)
    return state


def download_hub_weights(weights: HubWeights) -> Path:
    """The local path of the pinned file (the Hugging Face cache); `WeightsError` says what to do."""
    where = f"{weights.repo_id}@{weights.revision}"
    try:
        return Path(
            hf_hub_download(weights.repo_id, HUB_WEIGHTS_FILE, revision=weights.revision, library_name="deepgaze-hub")
        )
    except RepositoryNotFoundError:
        raise WeightsError(f"backbone weights {where}: no such model repo on {constants.ENDPOINT}") from None
    except RevisionNotFoundError:
        raise WeightsError(f"backbone weights {where}: the repo has no commit {weights.revision}") from None
    except EntryNotFoundError:
        raise WeightsError(f"backbone weights {where}: the repo has no {HUB_WEIGHTS_FILE} at that commit") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise WeightsError(
            f"backbone weights {where}: {HUB_WEIGHTS_FILE} is not in the local cache ({constants.HF_HUB_CACHE}) and "
            "the Hub cannot be reached (or HF_HUB_OFFLINE=1). Load once with network access to fill the cache."
        ) from None
    except HfHubHTTPError as error:
        raise WeightsError(f"backbone weights {where}: the Hub could not serve {HUB_WEIGHTS_FILE} ({error}); try again later") from None


def to_torchvision_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's VGG keys (``pre_logits.fc1/fc2``, ``head.fc``) renamed and reshaped to torchvision's;
    other keys unchanged."""
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, parameter = key.rpartition(".")
        if module in _TIMM_VGG_CLASSIFIER:
            key = f"{_TIMM_VGG_CLASSIFIER[module]}.{parameter}"
            value = value.reshape(value.shape[0], -1) if parameter == "weight" else value
        mapped[key] = value
    return mapped


def check_layout(state: dict[str, torch.Tensor], name: str, where: str) -> None:
    """`WeightsError` unless every tensor of ``state`` is one of torchvision's ``name``, same shape.

    Missing tensors are listed too when the file holds none of the network's keys (another layout);
    otherwise a file may hold a part of the network (the layers a backbone needs)."""
    import torchvision  # heavy; only needed when Hub weights are used

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(f"backbone weights {where}: Hub weights are read in torchvision's layout; {name!r} is not a torchvision model")
    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in torchvision.models.get_model(name, weights=None).state_dict().items()}
    mismatch = compare_layout(state, expected)
    missing = sorted(mismatch.missing) if not set(expected) & set(state) else []
    misshapen = [f"{key}: file {tuple(value.shape)}, {name} {shape}" for key, value, shape in sorted(mismatch.misshapen, key=lambda item: item[0])]
    problems = [
        f"{label} {items[:8]}" + (f" and {len(items) - 8} more" if len(items) > 8 else "")
        for label, items in (("missing", missing), ("unexpected", sorted(mismatch.unexpected)), ("wrong shapes", misshapen))
        if items
    ]
    if problems:
        raise WeightsError(
            f"backbone weights {where}: {HUB_WEIGHTS_FILE} does not hold {name} weights in torchvision's or timm's layout: "
            + "; ".join(problems)
        )
