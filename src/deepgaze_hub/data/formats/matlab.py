"""Reading MATLAB v5 ``.mat`` files (SALICON, MIT1003) with scipy, errors naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DatasetError


def load_mat(path: Path) -> dict[str, Any]:
    """The variables of a MATLAB v5 file (``scipy.io.loadmat``); unreadable files raise `DatasetError`."""
    try:
        from scipy.io import loadmat
    except ImportError:  # pragma: no cover - scipy is installed with the package's data extra
        raise DatasetError(f"{path}: reading .mat files needs scipy; install it with `pip install scipy`") from None
    try:
        return loadmat(str(path))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except Exception as error:  # noqa: BLE001, scipy raises ValueError, TypeError, OSError, zlib.error ... for bad files
        raise DatasetError(f"{path}: cannot read it as a MATLAB v5 .mat file ({type(error).__name__}: {error}); is it truncated?") from None


def points(value: Any, path: Path, what: str) -> np.ndarray:
    """A float64 (N, 2) array of (x, y) rows; MATLAB's empty matrices give (0, 2)."""
    array = np.asarray(value)
    if array.size == 0:
        return np.zeros((0, 2))
    if array.dtype.kind not in "biuf" or array.ndim != 2 or array.shape[1] != 2:
        raise DatasetError(f"{path}: {what} must be an N x 2 numeric matrix (x, y per row), got shape {array.shape} of {array.dtype}")
    return array.astype(np.float64)


def vector(value: Any, length: int, path: Path, what: str) -> np.ndarray:
    """A float64 (length,) array from a row or column vector."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or array.size != length or (array.ndim == 2 and 1 not in array.shape):
        raise DatasetError(f"{path}: {what} must be a numeric vector of {length} values, got shape {array.shape} of {array.dtype}")
    return array.astype(np.float64).reshape(-1)
