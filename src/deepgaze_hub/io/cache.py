"""The one folder deepgaze-hub caches files in (generated datasets, downloaded release files).

Resolution order: the ``cache_dir`` argument, else ``$DEEPGAZE_HUB_CACHE``, else
``$XDG_CACHE_HOME/deepgaze-hub``, else ``~/.cache/deepgaze-hub``. Each kind of file has its own
subfolder under it (``datasets/``, ``releases/``). Hugging Face Hub files are not kept here: they
stay in huggingface_hub's own cache (``$HF_HOME``).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the cache folder (takes precedence over ``$XDG_CACHE_HOME``).
CACHE_ENV = "DEEPGAZE_HUB_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder (see module docstring); it is not created here."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "deepgaze-hub"
