"""One entry point for "a model", whatever the user names: a directory, a registry name or a Hub repo id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model.deepgaze import DeepGaze
from .registry import Registry, RegistryError


def load_any(spec: str, *, registry: str | Path | None = None, **kwargs: Any) -> DeepGaze:
    """Load the model named by ``spec``, tried in this order:

    1. an existing directory written by save_pretrained;
    2. a registry name (``deepgaze-hub list``, e.g. ``deepgaze2-vgg19``): the pinned, checksummed release;
    3. a Hugging Face Hub repo id (``owner/name``).

    Keyword arguments go to `deepgaze_hub.load` for registry names (``members``,
    ``map_location``; ``revision`` must be None: registry models are pinned) and to
    `DeepGaze.from_pretrained` otherwise (``revision``, ``map_location``, ``members`` ...).
    ``registry`` is another hub_configs directory to look names up in.
    """
    if not Path(spec).expanduser().is_dir() and "/" not in spec and "\\" not in spec:
        table = Registry(registry)
        if spec.replace("_", "-") in table.names():
            if kwargs.pop("revision", None) is not None:
                raise RegistryError(
                    f"{spec} is a registry model, pinned to one revision; to load another revision, "
                    "pass its repo id (see `deepgaze-hub list`) instead of the name"
                )
            return table.load(spec, **kwargs)
    return DeepGaze.from_pretrained(spec, **kwargs)
