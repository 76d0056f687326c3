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
here every pixel is put into one of up to 2**16 bins by a monotone affine map of its value spanning the
fixated values, the bins are counted, and only the pixels sharing a bin with a fixation are
compared exactly. Against a given list of negative pixels (sAUC), the fixations' values are sorted
and each negative is placed among them by binary search.
"""

from __future__ import annotations

import torch

from .scratch import Scratch

#: Most bins spanning the fixated values in the all-pixel count (maps get about one bin per 8 pixels).
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
    number = min(BINS, max(256, 1 << (size // 8).bit_length()))  # small maps need fewer bins
    bins = _monotone_bins(maps, values, valid, number, scratch)
    fixation_bins = bins.gather(1, pixel).long()

    # every map's bins shifted to its own row of a (C, number + 1) table: all maps are counted and
    # looked up at once
    shifted = scratch.get("shifted", (count, size), torch.int32, maps.device)
    torch.add(bins, (torch.arange(count, dtype=torch.int32, device=maps.device) * (number + 1))[:, None], out=shifted)
    below = torch.bincount(shifted.view(-1), minlength=count * (number + 1)).view(count, number + 1)
    below = torch.cumsum(below, 1) - below  # pixels in lower bins: surely below the fixation
    less = below.gather(1, fixation_bins)

    # pixels that share a bin with some fixation of their image are compared exactly
    marked = torch.zeros(count, number + 1, dtype=torch.bool, device=maps.device)
    marked.scatter_(1, torch.where(valid, fixation_bins, number), True)
    marked[:, number] = False
    total = count * size
    padded = scratch.get("candidates", (-(-total // 8) * 8,), torch.bool, maps.device)
    padded[total:] = False
    mask, words = padded[:total], padded.view(torch.int64)
    torch.index_select(marked.view(-1), 0, shifted.view(-1), out=mask)
    # candidates are rare: find the 8-pixel words holding any, then the pixels in those
    eight = torch.arange(8, device=maps.device)
    candidates = (words.nonzero().flatten()[:, None] * 8 + eight).flatten()
    candidates = candidates[padded[candidates]]  # flat indices into the (C, N) maps, map by map
    equal = torch.zeros_like(less)
    step = max(1, _TABLE // max(1, pixel.shape[1]))
    flat_maps, flat_bins = maps.reshape(-1), bins.view(-1)
    for start in range(0, len(candidates), step):
        part = candidates[start : start + step]
        row, column = part // size, part % size
        part_values = flat_maps[part][:, None]
        fixation_values = values[row]
        same_bin = flat_bins[part].long()[:, None] == fixation_bins[row]
        lower = same_bin & (part_values < fixation_values)
        tied = part_values == fixation_values  # equal values share a bin
        if ties == "index":
            lower |= tied & (column[:, None] < pixel[row])
        else:
            equal.index_add_(0, row, tied.long())
        less.index_add_(0, row, lower.long())
    if ties == "index":
        equal = torch.ones_like(less)
    return less, equal


def _monotone_bins(maps: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, number: int, scratch: Scratch) -> torch.Tensor:
    """(C, N) int32 bins in [0, number - 1], never decreasing with the value, fine between the fixated values.

    ``trunc(clamp((v - base) * scale))``: a subtraction and a multiplication, each rounded
    monotonically (and identically in vectorised and scalar code), so a pixel in a lower bin than a
    fixation has a lower value. The fixated values map to about [2, number - 3]; values far below or
    above all of them share bin 0 or number - 1 with none. Bins are kept at least 4 units in the last
    place of the values wide, so rounding ``base`` to the maps' dtype cannot move a fixation by a bin.
    """
    finite = valid & torch.isfinite(values)
    low = torch.where(finite, values, float("inf")).amin(1).to(torch.float64)
    high = torch.where(finite, values, float("-inf")).amax(1).to(torch.float64)
    none = ~torch.isfinite(low)
    low = torch.where(none, 0.0, low)
    high = torch.where(none, 0.0, high)
    resolution = torch.finfo(maps.dtype).eps * torch.maximum(low.abs(), high.abs())
    scale = torch.where(high > low, (number - 5) / (high - low), 1.0)
    scale = torch.where(resolution > 0, torch.minimum(scale, 0.25 / resolution), scale)
    base = (low - 2.0 / scale).to(maps.dtype)
    work = scratch.get("work", tuple(maps.shape), maps.dtype, maps.device)
    torch.sub(maps, base[:, None], out=work)
    work.mul_(scale.to(maps.dtype)[:, None]).clamp_(0, number - 1)  # -inf -> 0; NaN was refused on reading
    bins = scratch.get("bins", tuple(maps.shape), torch.int32, maps.device)
    return bins.copy_(work)


def counts_against_negatives(
    values: torch.Tensor, negative: torch.Tensor, negative_weight: torch.Tensor, positive: torch.Tensor, ties: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted counts of negatives below and equal to each positive under the tie rule.

    ``values`` (C, U): each map's values at U distinct pixels in ascending flat index; ``negative``
    (T,) and ``positive`` (C, Fm): indices into those U entries; ``negative_weight`` (C, T) int64
    (0 drops a negative). Returns ``(less, equal)`` (C, Fm) int64. No map is sorted: the few
    positives of each map are, every negative is placed among them by binary search; a negative
    equal to some positive counts for every positive of that value (``"average"``), or, with
    ``"index"``, is compared with each of them by pixel.
    """
    fixations = positive.shape[1]
    negative_values = values.index_select(1, negative)
    positive_values = values.gather(1, positive)
    ordered, order = torch.sort(positive_values, dim=1)
    above = torch.searchsorted(ordered, negative_values, right=True)  # sorted positives >= this one are above
    histogram = torch.zeros(len(values), fixations + 1, dtype=torch.int64, device=values.device)
    histogram.scatter_add_(1, above, negative_weight)
    less = torch.empty_like(order).scatter_(1, order, torch.cumsum(histogram[:, :fixations], 1))
    # negatives equal to some positive: equal to the last sorted positive not above them
    group = (above - 1).clamp_min(0)
    tied = ((above > 0) & (ordered.gather(1, group) == negative_values)) * negative_weight
    if ties == "average":  # a tied negative counts as equal for every positive of its value
        counts = torch.zeros_like(less).scatter_add_(1, group, tied)
        last = torch.searchsorted(ordered, ordered, right=True) - 1  # each sorted positive's group end
        return less, torch.empty_like(less).scatter_(1, order, counts.gather(1, last))
    # "index": equal values are ordered by pixel. Only a negative on the positive's own pixel is
    # equal; one of the same value on an earlier pixel is below it. Positives sorted by (value,
    # pixel) as one integer key (dense rank of the value, then the pixel's entry among the U):
    # a tied negative is below the positives of its value from its insertion point to the
    # value's last positive, added as +1 / -1 at the ends of that run and summed cumulatively.
    on_pixel = torch.zeros_like(values, dtype=torch.int64).scatter_add_(1, negative.expand_as(negative_weight), negative_weight)
    equal = on_pixel.gather(1, positive)
    rank = torch.cat([torch.zeros_like(ordered[:, :1], dtype=torch.int64), (ordered[:, 1:] != ordered[:, :-1]).long()], 1).cumsum(1)
    span = values.shape[1] + 1
    keys, key_order = torch.sort(rank.gather(1, torch.argsort(order, 1)) * span + positive, dim=1)
    negative_keys = rank.gather(1, group) * span + negative
    start = torch.searchsorted(keys, negative_keys, right=True)  # first positive above the negative
    run = torch.zeros(len(values), fixations + 1, dtype=torch.int64, device=values.device)
    run.scatter_add_(1, start, tied).scatter_add_(1, group + 1, -tied)  # a value's positives end at group
    less.scatter_add_(1, key_order, run[:, :fixations].cumsum(1))
    return less, equal
