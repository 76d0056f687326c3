"""The error raised for unusable fixation data: a dataset file or a file being imported."""

from __future__ import annotations

from ..errors import DeepGazeError


class DatasetError(DeepGazeError, ValueError):
    """A dataset, or an input file for one, that cannot be used.

    The message names the file (and where useful the row, image or field) and says what is wrong
    and what to do about it.
    """
