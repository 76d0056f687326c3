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

#: float32 inputs with more values than this are looked up in bins (`_look_up`), the same colours.
_BINS = 1 << 14


def apply_colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (any shape) to uint8 RGB (shape + (3,)).

    Each channel is the anchors' linear interpolation at the value clipped to [0, 1], rounded
    (in float64, whatever the input type). Large float32 arrays (a density picture) take a lookup
    that gives the same colours at a third of the cost.
    """
    values = np.asarray(values)
    if values.dtype == np.float32 and values.size > 4 * _BINS:
        return _look_up(values)
    return _interpolate(values)


def _interpolate(values: np.ndarray) -> np.ndarray:
    values = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    out = np.empty(values.shape + (3,), dtype=np.uint8)
    for c in range(3):  # channel by channel: no (..., 3) float64 stack (rint rounds like round)
        out[..., c] = np.rint(np.interp(values, _ANCHORS[:, 0], _ANCHORS[:, c + 1]))
    return out


def _look_up(values: np.ndarray) -> np.ndarray:
    """`_interpolate` of a float32 array, by bins: [0, 1] is cut into ``_BINS`` equal bins
    [k / _BINS, (k + 1) / _BINS) (exact in float32: the bin of v is floor(v * _BINS)).

    Between two anchors a rounded linear interpolation is monotonic, so a bin whose first and last
    float32 values get the same colour, and that holds no anchor, has that colour throughout. The
    values of the other bins (where a channel steps or an anchor lies; ~5 % of bins) and NaN are
    interpolated one by one.
    """
    within = np.clip(values, np.float32(0.0), np.float32(1.0))
    edges = np.arange(_BINS + 1, dtype=np.float32) / np.float32(_BINS)  # the last: the value 1 alone
    first = _interpolate(edges)
    last = np.concatenate([_interpolate(np.nextafter(edges[1:], np.float32(0.0))), first[-1:]])
    constant = (first == last).all(axis=1)
    constant[np.searchsorted(edges, _ANCHORS[1:-1, 0]) - 1] = False  # bins holding an inner anchor
    with np.errstate(invalid="ignore"):  # NaN: any bin, interpolated below
        bins = (within * np.float32(_BINS)).astype(np.intp)
    np.clip(bins, 0, _BINS, out=bins)
    out = np.take(first, bins, axis=0)  # (..., 3); np.take: several times faster than first[bins]
    uncertain = np.flatnonzero(~np.take(constant, bins) | np.isnan(within))
    out.reshape(-1, 3)[uncertain] = _interpolate(within.reshape(-1)[uncertain])
    return out
