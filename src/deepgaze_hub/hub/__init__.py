"""Named models: the registry (hub_configs/), loading any model by name, publishing to the Hub.

`load` is the one way to get a model by name (a registry name, ``hf-hub:owner/name[@revision]`` or
a local directory); ``DeepGaze.from_pretrained`` (huggingface_hub's API) also loads directories and
repo ids. This package builds on `deepgaze_hub.model`, never the reverse.
"""

from .loader import MODEL_HELP, ModelSource, load
from .registry import Registry, RegistryEntry, list_models

__all__ = ["MODEL_HELP", "ModelSource", "Registry", "RegistryEntry", "list_models", "load"]
