"""One entry point for "a model", whatever the user names: a local directory or a Hub repo id."""

from __future__ import annotations

from typing import Any

from ..model.deepgaze import DeepGaze


def load_any(spec: str, **kwargs: Any) -> DeepGaze:
    """Load the model named by ``spec``: a directory written by save_pretrained, or a Hub repo id.

    Keyword arguments go to `DeepGaze.from_pretrained` (``revision``, ``map_location`` ...).
    """
    return DeepGaze.from_pretrained(spec, **kwargs)
