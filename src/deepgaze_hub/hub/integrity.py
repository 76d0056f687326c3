"""Checksums of model files: what the registry pins and what is verified after every download."""

from __future__ import annotations

from pathlib import Path

from ..errors import WeightsError
from ..io.download import file_sha256

__all__ = ["file_sha256", "verify_sha256"]


def verify_sha256(path: str | Path, expected: str, where: str) -> None:
    """Raise `WeightsError` unless ``path`` has the sha256 ``expected``; ``where`` names its origin."""
    actual = file_sha256(path)
    if actual != expected.lower():
        stored = Path(path).resolve()  # in the Hugging Face cache, the blob behind the snapshot link
        raise WeightsError(
            f"{where}: {Path(path).name} has sha256 {actual}, but {expected} is pinned. The local copy "
            f"{stored} is damaged or was modified, or the pin is wrong. Delete that file and load "
            "again to download a fresh copy; if the mismatch persists, report it to the publisher."
        )
