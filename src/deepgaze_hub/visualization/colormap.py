"""A dark-to-bright perceptually ordered colormap, interpolated from a few anchor colours."""

from __future__ import annotations

import numpy as np

# Anchors (position, RGB) of a black-purple-orange-cream ramp, monotonic in lightness.
_ANCHORS = np.array(
    [
        (0.00, 0, 0, 4),
        (0.20, 59, 15, 112),
        (0.40, 140, 41, 129),
        (0.60, 222, 73, 104),
        (0.80, 254, 159, 109),
        (1.00, 252, 253, 191),
    ],
    dtype=np.float64,
)


def apply_colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (any shape) to uint8 RGB (shape + (3,))."""
    values = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    out = np.empty(values.shape + (3,), dtype=np.uint8)
    for c in range(3):  # channel by channel: no (..., 3) float64 stack (rint rounds like round)
        out[..., c] = np.rint(np.interp(values, _ANCHORS[:, 0], _ANCHORS[:, c + 1]))
    return out
