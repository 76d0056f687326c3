"""Every error a user can cause and fix, in one place at the bottom of the package.

Each class is one a caller may want to catch on its own; all derive from `DeepGazeError`, which the
command line prints as one line (exit status 1) and the service answers as 4xx JSON. Messages name
the input (file, field, image) and say what to do.
"""


class DeepGazeError(Exception):
    """Something about the user's input, files or settings is wrong; the message says what to do."""


class ConfigError(DeepGazeError, ValueError):
    """A value read from a model config, recipe, registry entry, service setting or option is of the
    wrong type or out of bounds; the message names the file, the field and the allowed values."""


class ImageError(DeepGazeError, ValueError):
    """An image that cannot be read or predicted (corrupt, too large or too small, out of memory);
    the message names the image."""


class WeightsError(DeepGazeError, RuntimeError):
    """Model files that cannot be found, downloaded, verified or loaded (missing, tampered,
    wrong checksum, pickle-only)."""


class ModelNotPublishedError(WeightsError):
    """A registry model whose weights are declared but not published yet (``pretrained=False`` works)."""


class DatasetError(DeepGazeError, ValueError):
    """A fixation dataset, import source or split that cannot be used; the message names the file."""


class TrainingError(DeepGazeError, RuntimeError):
    """A training run that cannot go on as asked: a stale feature cache, an unreadable checkpoint."""


class EvaluationError(DeepGazeError, ValueError):
    """Predictions, fixations or baselines that cannot be scored or exported together."""


class PublishError(DeepGazeError, RuntimeError):
    """A model that cannot be pushed to the Hugging Face Hub as asked."""
