"""Public names of a package imported on first use: `lazy_getattr`.

A package lists each public name with the module that defines it and sets
``__getattr__ = lazy_getattr(__name__, exports)``; ``import package`` then costs nothing until a
name is used, and a used name is kept in the package, so later lookups are plain attribute reads.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``exports`` maps a public name to the module
    defining it (absolute, or relative to ``package`` when it starts with ``.``)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    return __getattr__
