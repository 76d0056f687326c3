"""Counting how many negatives lie below each fixation's value: the arithmetic behind AUC and sAUC.

The AUC of one fixation with map value ``v`` against negatives ``u_1 .. u_M`` is

    (#{u_j < v} + 0.5 * #{u_j == v}) / M

(the area under the ROC curve with every value as threshold, which is what pysaliency's ROC code
computes; the mean over a set of fixations equals the AUC of the set). Two tie rules:

* ``"average"``: equal values count one half, as above (pysaliency on a plain saliency map);
* ``"index"``: values are compared first, equal values by flat pixel index (row-major), and only
  the same pixel counts as equal. This is the ranking of pysaliency's *equalised* maps,
  ``argsort(argsort(map.flatten()))``, with ties ordered by index (numpy's default sort leaves that
  order unspecified; a stable sort gives this one). The benchmark applies it to probabilistic
  models (AUC on the equalised density, sAUC on the equalised ``log p - log p_shuffled``).

Against all pixels of an image (AUC), sorting every map is what makes simple implementations slow;
here every pixel is put into one of 2**16 bins by a monotone affine map of its value spanning the
fixated values, the bins are counted, and only the pixels sharing a bin with a fixation are
compared exactly. Against a given list of negative pixels (sAUC), the values at the pixels involved
are ranked and the negatives' ranks are counted.
"""

from __future__ import annotations

import torch

from .scratch import Scratch

#: Bins spanning the fixated values in the all-pixel count.
BINS = 1 << 16
#: Largest (candidates x fixations) comparison table built at once.
_TABLE = 1 << 22


def auc_from_counts(less: torch.Tensor, equal: torch.Tensor, total: torch.Tensor | int) -> torch.Tensor:
    """Per-fixation AUC ``(less + 0.5 * equal) / total`` in float64."""
    return (less.to(torch.float64) + 0.5 * equal.to(torch.float64)) / total


def counts_against_all_pixels(
    maps: torch.Tensor, pixel: torch.Tensor, valid: torch.Tensor, ties: str, scratch: Scratch | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every fixation, the pixels of its map below it and equal to it under the tie rule.

    ``maps`` (C, N) flattened maps; ``pixel`` (C, Fm) flat pixel index of each fixation, ``valid``
    (C, Fm) marks real entries (padding is ignored). Returns ``(less, equal)``, (C, Fm) int64; with
    ``ties="index"``, ``less`` counts equal pixels of smaller index and ``equal`` is 1 (the pixel
    itself). Exact for any values, including ``-inf`` and constant maps.
    """
    scratch = scratch or Scratch()
    count, size = maps.shape
    values = maps.gather(1, pixel)
    bins = _monotone_bins(maps, values, valid, scratch)
    fixation_bins = bins.gather(1, pixel).long()

    below = torch.empty(count, BINS, dtype=torch.int64, device=maps.device)
    for c in range(count):
        below[c] = torch.bincount(bins[c], minlength=BINS)
    below = torch.cumsum(below, 1) - below  # pixels in lower bins: surely below the fixation
    less = below.gather(1, fixation_bins)

    # pixels that share a bin with some fixation of their image are compared exactly
    marked = torch.zeros(count, BINS + 1, dtype=torch.bool, device=maps.device)
    marked.scatter_(1, torch.where(valid, fixation_bins, BINS), True)
    marked[:, BINS] = False
    padded = scratch.get("candidates", (-(-size // 8) * 8,), torch.bool, maps.device)
    padded[size:] = False
    mask, words = padded[:size], padded.view(torch.int64)
    eight = torch.arange(8, device=maps.device)
    equal = torch.zeros_like(less)
    step = max(1, _TABLE // max(1, pixel.shape[1]))
    for c in range(count):
        torch.index_select(marked[c], 0, bins[c], out=mask)
        # candidates are rare: find the 8-pixel words holding any, then the pixels in those
        candidates = (words.nonzero().flatten()[:, None] * 8 + eight).flatten()
        candidates = candidates[padded[candidates]]
        for start in range(0, len(candidates), step):
            part = candidates[start : start + step]
            part_values = maps[c, part][:, None]
            same_bin = bins[c, part].long()[:, None] == fixation_bins[c][None, :]
            lower = same_bin & (part_values < values[c][None, :])
            tied = part_values == values[c][None, :]  # equal values share a bin
            if ties == "index":
                lower |= tied & (part[:, None] < pixel[c][None, :])
            else:
                equal[c] += tied.sum(0)
            less[c] += lower.sum(0)
    if ties == "index":
        equal = torch.ones_like(less)
    return less, equal


def _monotone_bins(maps: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    """(C, N) int32 bins in [0, BINS - 1], never decreasing with the value, fine between the fixated values.

    ``trunc(clamp((v - base) * scale))``: a subtraction and a multiplication, each rounded
    monotonically (and identically in vectorised and scalar code), so a pixel in a lower bin than a
    fixation has a lower value. The fixated values map to about [2, BINS - 3]; values far below or
    above all of them share bin 0 or BINS - 1 with none. Bins are kept at least 4 units in the last
    place of the values wide, so rounding ``base`` to the maps' dtype cannot move a fixation by a bin.
    """
    finite = valid & torch.isfinite(values)
    low = torch.where(finite, values, float("inf")).amin(1).to(torch.float64)
    high = torch.where(finite, values, float("-inf")).amax(1).to(torch.float64)
    none = ~torch.isfinite(low)
    low = torch.where(none, 0.0, low)
    high = torch.where(none, 0.0, high)
    resolution = torch.finfo(maps.dtype).eps * torch.maximum(low.abs(), high.abs())
    scale = torch.where(high > low, (BINS - 5) / (high - low), 1.0)
    scale = torch.where(resolution > 0, torch.minimum(scale, 0.25 / resolution), scale)
    base = (low - 2.0 / scale).to(maps.dtype)
    work = scratch.get("work", tuple(maps.shape), maps.dtype, maps.device)
    torch.sub(maps, base[:, None], out=work)
    work.mul_(scale.to(maps.dtype)[:, None]).clamp_(0, BINS - 1)  # -inf -> 0; NaN was refused on reading
    bins = scratch.get("bins", tuple(maps.shape), torch.int32, maps.device)
    return bins.copy_(work)


def tie_keys(values: torch.Tensor, ties: str) -> torch.Tensor:
    """(C, U) int64 keys with the order of ``values`` (C, U) along dim 1 under the tie rule.

    The U entries must be distinct pixels in ascending flat index. ``"average"``: equal values get
    equal keys; ``"index"``: every entry its own key, equal values ordered by position.
    """
    ordered, order = torch.sort(values, dim=1, stable=True)
    if ties == "index":
        rank = torch.arange(values.shape[1], device=values.device).expand_as(order)
    else:
        steps = torch.zeros_like(order)
        steps[:, 1:] = (ordered[:, 1:] != ordered[:, :-1]).long()
        rank = torch.cumsum(steps, 1)
    return torch.empty_like(order).scatter_(1, order, rank)


def counts_against_negatives(
    keys: torch.Tensor, negative_keys: torch.Tensor, negative_weight: torch.Tensor, positive_keys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted counts of negatives below and equal to each positive, by integer keys.

    ``keys`` (C, U) from `tie_keys` (only its size is used); ``negative_keys`` (C, T) and
    ``negative_weight`` (C, T) int64 (0 drops a negative); ``positive_keys`` (C, Fm).
    Returns ``(less, equal)`` (C, Fm) int64.
    """
    histogram = torch.zeros(keys.shape, dtype=torch.int64, device=keys.device)
    histogram.scatter_add_(1, negative_keys, negative_weight)
    below = torch.cumsum(histogram, 1) - histogram
    return below.gather(1, positive_keys), histogram.gather(1, positive_keys)
