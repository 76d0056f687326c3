"""Saliency metrics of the MIT/Tübingen benchmark on plain saliency maps, vectorised in torch.

For users who bring saliency maps (classic models, any values): each function scores the maps as
given. For probabilistic models, `deepgaze_hub.evaluation.evaluate_log_densities` first derives the
map that is optimal for each metric and then calls the same arithmetic. Maps are a (B, H, W) tensor
or a list of (H, W) maps; fixations are ``x`` (column), ``y`` (row) in float pixels and ``n``
(image index), read at ``map[int(y), int(x)]`` (truncation, as in pysaliency); every fixation counts,
duplicates included. Computation follows the maps' device; per-image results are float64.

Per-fixation metrics (AUC, sAUC, NSS) give each image the mean over its fixations; the benchmark
then averages over images (`MetricResult.value`). Images without fixations are NaN and left out of
averages (pysaliency's ``average='image'`` groups by the images that have fixations).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from ..errors import EvaluationError
from .inputs import CHUNK_PIXELS, ArrayLike, Maps, MapsLike, ScoredFixations
from .ranks import (
    auc_from_counts,
    counts_against_all_pixels,
    counts_against_negatives,
)
from .results import MetricResult
from .scratch import Scratch

#: The regulariser of the benchmark's KLDiv (MATLAB's eps).
KLDIV_EPS = 2.2204e-16
TIE_RULES = ("average", "index")


def auc(saliency_maps: MapsLike, x: ArrayLike, y: ArrayLike, n: ArrayLike, *, ties: str = "average") -> MetricResult:
    """AUC against all pixels of the image (pysaliency's ``nonfixations='uniform'``).

    Per fixation with map value ``v``: ``(#pixels below v + 0.5 * #pixels equal to v) / (H * W)``,
    the fixated pixel itself included among the pixels; the image's AUC is the mean over its
    fixations (= the ROC area of all its fixations against all pixels). Unitless, 0..1; a constant
    map scores 0.5. Only ranks matter, so ``-inf`` values are allowed. ``ties="index"`` ranks equal
    values by flat pixel index instead (pysaliency on an equalised map, see
    `deepgaze_hub.evaluation.ranks`); then ``(rank + 0.5) / (H * W)``. No map is sorted: the cost
    is a few passes over each map, whatever the number of fixations.
    """
    _check_ties(ties)
    maps = Maps(saliency_maps, "saliency_maps", allow_neg_inf=True)
    fixations = ScoredFixations(x, y, n, maps.sizes, maps.device)
    per_fixation = torch.full((len(fixations),), float("nan"), dtype=torch.float64, device=maps.device)
    scratch = Scratch()
    for indices, chunk in maps.chunks(fixations.images_with_fixations()):
        position, valid = fixations.padded(indices)
        per_fixation[position[valid]] = auc_chunk(chunk, fixations.padded_pixels(position, valid), valid, ties, scratch)[valid]
    return MetricResult.from_fixations("AUC", per_fixation, fixations.n, len(maps))


def sauc(saliency_maps: MapsLike, x: ArrayLike, y: ArrayLike, n: ArrayLike, *, ties: str = "average") -> MetricResult:
    """Shuffled AUC: each fixation against the fixations of all *other* images.

    Negatives for image i: every fixation of every other image, its coordinates rescaled to image
    i's size (``x * W_i / W_other``, truncated and clamped into the image), duplicates kept, read
    from image i's map; fixations of image i are never its own negatives (pysaliency's
    ``FullShuffledNonfixationProvider``). Per fixation: ``(#negatives below + 0.5 * #equal) / #negatives``;
    mean per image. NaN where an image has no negatives (no other image has fixations).
    ``ties`` as in `auc` (``"index"``: only negatives on the same pixel count as equal).
    """
    _check_ties(ties)
    maps = Maps(saliency_maps, "saliency_maps", allow_neg_inf=True)
    fixations = ScoredFixations(x, y, n, maps.sizes, maps.device)

    def read(indices: list[int], pixels: torch.Tensor) -> torch.Tensor:
        return maps.stack(indices).reshape(len(indices), -1).index_select(1, pixels)

    return shuffled_auc_result(fixations, maps.sizes, read, ties)


def nss(saliency_maps: MapsLike, x: ArrayLike, y: ArrayLike, n: ArrayLike) -> MetricResult:
    """Normalized scanpath saliency: ``(s[y, x] - mean(s)) / std(s)`` per fixation.

    ``std`` is the population standard deviation over all pixels of the map (numpy's default,
    as pysaliency). A constant map scores 0 (pysaliency skips the division when ``std == 0``).
    Unitless (standard deviations); mean per image.
    """
    maps = Maps(saliency_maps, "saliency_maps")
    fixations = ScoredFixations(x, y, n, maps.sizes, maps.device)
    per_fixation = torch.full((len(fixations),), float("nan"), dtype=torch.float64, device=maps.device)
    scratch = Scratch()
    for indices, chunk in maps.chunks(fixations.images_with_fixations()):
        position, valid = fixations.padded(indices)
        per_fixation[position[valid]] = nss_chunk(chunk, fixations.padded_pixels(position, valid), scratch)[valid]
    return MetricResult.from_fixations("NSS", per_fixation, fixations.n, len(maps))


def cc(saliency_maps: MapsLike, empirical_maps: MapsLike) -> MetricResult:
    """Pearson correlation coefficient between each saliency map and its empirical map.

    ``empirical_maps``: the fixation maps to compare with, usually `empirical_saliency_maps`
    (fixation counts blurred by a Gaussian). Unitless, -1..1. A constant saliency map scores 0
    (pysaliency's rule); an all-zero empirical map (an image without fixations) gives NaN.
    """
    return _map_metric("CC", saliency_maps, empirical_maps)


def kldiv(saliency_maps: MapsLike, empirical_maps: MapsLike) -> MetricResult:
    """The benchmark's image-based KL divergence ``KL(empirical || saliency)``, nats per image.

    Both maps become densities (minus their minimum if it is negative, divided by their sum; an
    all-zero saliency map becomes uniform), then ``sum(q * log(eps + q / (p + eps)))`` with
    q = empirical, p = saliency map and ``eps = 2.2204e-16`` (MATLAB's eps, as the benchmark).
    Lower is better; identical maps score 0. An all-zero empirical map gives NaN (pysaliency would
    compare against a uniform map; the benchmark has no images without fixations).
    """
    return _map_metric("KLDiv", saliency_maps, empirical_maps)


def sim(saliency_maps: MapsLike, empirical_maps: MapsLike) -> MetricResult:
    """Similarity (histogram intersection): ``sum(min(p, q))`` of both maps made densities.

    Densities as in `kldiv` (minus a negative minimum, divided by the sum). Unitless, 0..1,
    identical maps score 1. An all-zero empirical map gives NaN.
    """
    return _map_metric("SIM", saliency_maps, empirical_maps)


# --------------------------------------------------------------------------- chunk arithmetic
# (C, H, W) maps of one size in, per-fixation (C, Fm) or per-image (C,) float64 out.


def auc_chunk(maps: torch.Tensor, pixel: torch.Tensor, valid: torch.Tensor, ties: str, scratch: Scratch) -> torch.Tensor:
    flat = maps.reshape(maps.shape[0], -1)
    less, equal = counts_against_all_pixels(flat, pixel, valid, ties, scratch)
    return auc_from_counts(less, equal, flat.shape[1])


#: Pixels of the maps `nss_chunk` works on together: its two work maps then stay in the CPU's cache
#: through its passes (on a 2-core EPYC, 1024 x 768 maps took 35% less time one at a time than five at a time).
NSS_PIXELS = 1 << 20


def nss_chunk(maps: torch.Tensor, pixel: torch.Tensor, scratch: Scratch, *, exp: bool = False) -> torch.Tensor:
    """NSS of (C, H, W) maps at ``pixel`` (C, Fm); with ``exp`` the maps are log densities of the map."""
    flat = maps.reshape(maps.shape[0], -1)
    count, size = flat.shape
    step = max(1, NSS_PIXELS // max(1, size))
    if count > step:  # a few maps at a time (each map's arithmetic is the same)
        return torch.cat([_nss_part(flat[start : start + step], pixel[start : start + step], scratch, exp) for start in range(0, count, step)])
    return _nss_part(flat, pixel, scratch, exp)


#: A map whose variance is at most this times its squared mean is checked for being constant (exactly).
NEARLY_CONSTANT = 1e-3


def _nss_part(flat: torch.Tensor, pixel: torch.Tensor, scratch: Scratch, exp: bool) -> torch.Tensor:
    size = flat.shape[1]
    centred = scratch.get("centred", tuple(flat.shape), flat.dtype, flat.device)
    if exp:
        torch.exp(flat, out=centred)
    else:
        centred.copy_(flat)
    mean = centred.sum(1, keepdim=True) / size
    centred.sub_(mean)  # a second pass makes mean and std accurate in float32
    residual = centred.sum(1).to(torch.float64) / size
    squares = scratch.get("squares", tuple(flat.shape), flat.dtype, flat.device)
    # sum() uses cascade summation, accurate in float32 (vector_norm is not, on a single long row)
    variance = (torch.mul(centred, centred, out=squares).sum(1).to(torch.float64) / size - residual**2).clamp_min(0)
    values = centred.gather(1, pixel).to(torch.float64) - residual[:, None]
    # a constant map scores 0. Its variance comes out as rounding noise, far below its squared mean
    # (a relative error of the float32 sums squared), so only maps that close are tested, by their
    # largest and smallest value: no passes for the others
    constant = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
    close = (variance <= NEARLY_CONSTANT * mean[:, 0].to(torch.float64) ** 2).nonzero().flatten()
    if len(close):
        again = flat[close].exp() if exp else flat[close]
        constant[close] = again.amax(1) == again.amin(1)
    return torch.where(constant[:, None], torch.zeros_like(values), values / variance.sqrt()[:, None])


#: The map metrics `map_chunk_scores` computes.
MAP_METRICS = ("CC", "KLDiv", "SIM")


class EmpiricalReference(NamedTuple):
    """The empirical side of `map_chunk_scores`, prepared once (`empirical_reference`) for scoring
    several models' maps against the same empirical maps. Read only."""

    #: (C, N) float64 densities of the empirical maps, and per map: constant?, all zero?
    density: torch.Tensor
    constant: torch.Tensor
    empty: torch.Tensor
    #: the densities minus their means and the row-wise dot products of those (CC); None without CC
    centred: torch.Tensor | None
    norm: torch.Tensor | None


def empirical_reference(empirical: torch.Tensor, *, centred: bool = True, overwrite: bool = False) -> EmpiricalReference:
    """`EmpiricalReference` of (C, H, W) empirical maps (with ``overwrite``, float64 maps are used as work space)."""
    q, q_constant, q_empty = _density(empirical, overwrite)
    if not centred:
        return EmpiricalReference(q, q_constant, q_empty, None, None)
    q_centred = q - q.sum(1, keepdim=True) / q.shape[1]
    return EmpiricalReference(q, q_constant, q_empty, q_centred, _rowdot(q_centred, q_centred))


def map_chunk_scores(
    maps: torch.Tensor,
    empirical: torch.Tensor | None,
    names: Sequence[str],
    *,
    overwrite: bool = False,
    reference: EmpiricalReference | None = None,
) -> dict[str, torch.Tensor]:
    """CC, KLDiv and/or SIM of (C, H, W) saliency maps against their empirical maps: ``{name: (C,) float64}``.

    Both maps are made densities once (pysaliency's rule: a negative minimum shifted to 0, divided by
    the sum; an all-zero map becomes uniform) and shared by the three metrics. CC is computed on the
    densities, which is the same Pearson correlation as on the maps (an affine change of either
    map with a positive factor leaves it unchanged). Inputs are not modified, unless ``overwrite``
    (then float64 inputs are used as work space). ``reference``: `empirical_reference` of the
    empirical maps, made beforehand (then ``empirical`` is not read; the same results).
    """
    p, p_constant, _ = _density(maps, overwrite)
    if reference is None:
        q, q_constant, q_empty = _density(empirical, overwrite)
    else:
        q, q_constant, q_empty = reference.density, reference.constant, reference.empty
    out: dict[str, torch.Tensor] = {}
    work = torch.empty_like(p)
    if "KLDiv" in names:
        torch.add(p, KLDIV_EPS, out=work)
        torch.div(q, work, out=work).add_(KLDIV_EPS).log_()
        out["KLDiv"] = torch.where(q_empty, float("nan"), _rowdot(q, work))
    if "SIM" in names:
        out["SIM"] = torch.where(q_empty, float("nan"), torch.minimum(p, q, out=work).sum(1))
    if "CC" in names:
        size = p.shape[1]
        p.sub_(p.sum(1, keepdim=True) / size)
        if reference is None or reference.centred is None:
            q = q.sub_(q.sum(1, keepdim=True) / size) if reference is None else q - q.sum(1, keepdim=True) / size
            q_norm = _rowdot(q, q)
        else:
            q, q_norm = reference.centred, reference.norm
        value = _rowdot(p, q) / (_rowdot(p, p) * q_norm).sqrt()
        value = torch.where(p_constant, torch.zeros_like(value), value)
        out["CC"] = torch.where(q_constant, float("nan"), value)
    return {name: out[name] for name in names}


def _density(maps: torch.Tensor, overwrite: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(C, N) float64 densities of (C, H, W) maps, and per map: constant?, all zero?

    A new tensor, or ``maps`` itself made densities when ``overwrite`` and it is float64.
    """
    flat = maps.reshape(maps.shape[0], -1)
    low, high = flat.amin(1), flat.amax(1)  # (faster than aminmax on the CPU)
    shift = low.to(torch.float64).clamp(max=0)[:, None]
    if overwrite and flat.dtype == torch.float64:
        density = flat.sub_(shift) if bool((low < 0).any()) else flat
    else:
        density = flat - shift  # float64 whatever the maps' dtype
    total = density.sum(1)
    zero = total == 0  # values >= 0 summing to 0: all zero (also a constant map shifted to 0)
    density.div_(torch.where(zero, 1.0, total)[:, None])
    if bool(zero.any()):
        density[zero] = 1.0 / density.shape[1]
    return density, low == high, zero & (low >= 0)


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products of two (C, N) tensors without a (C, N) temporary."""
    return torch.stack([torch.dot(x, y) for x, y in zip(a, b)]) if len(a) else a.new_zeros(0)


def _map_metric(name: str, saliency_maps: MapsLike, empirical_maps: MapsLike) -> MetricResult:
    maps = Maps(saliency_maps, "saliency_maps")
    empirical = Maps(empirical_maps, "empirical_maps")
    if empirical.sizes != maps.sizes:
        raise EvaluationError(
            f"empirical_maps: need one map per saliency map with the same size, got {len(empirical)} maps for "
            f"{len(maps)} or different sizes"
        )
    per_image = torch.full((len(maps),), float("nan"), dtype=torch.float64, device=maps.device)
    for indices, chunk in maps.chunks():
        index = torch.as_tensor(indices, device=maps.device)
        per_image[index] = map_chunk_scores(chunk, empirical.stack(indices).to(maps.device), [name])[name]
    return MetricResult(name=name, per_image=per_image)


def _check_ties(ties: str) -> None:
    if ties not in TIE_RULES:
        raise EvaluationError(f"ties must be one of {TIE_RULES}, got {ties!r}")


# --------------------------------------------------------------------------- shuffled AUC

ValueReader = Callable[[list[int], torch.Tensor], torch.Tensor]


def shuffled_auc_result(fixations: ScoredFixations, sizes: Sequence[tuple[int, int]], read: ValueReader, ties: str) -> MetricResult:
    """sAUC of every fixation, reading map values through ``read(indices, pixels) -> (C, P)``.

    ``read`` returns the values of the maps of images ``indices`` (all of one size) at the flat
    ``pixels`` (P,) (ascending, distinct): only the pixels of fixations and of rescaled negatives are
    ever read, so a derived map never has to be formed whole.
    """
    per_fixation = torch.full((len(fixations),), float("nan"), dtype=torch.float64, device=fixations.n.device)
    images = fixations.images_with_fixations()
    groups: dict[tuple[int, int], list[int]] = {}
    for i in images:
        groups.setdefault(tuple(sizes[i]), []).append(i)
    for (height, width), members in groups.items():
        # every fixation of the dataset, moved to this size (pysaliency multiplies by the size ratio)
        columns = (fixations.x * (width / fixations.widths.to(torch.float64))[fixations.n]).long().clamp(0, width - 1)
        rows = (fixations.y * (height / fixations.heights.to(torch.float64))[fixations.n]).long().clamp(0, height - 1)
        pixels, where = torch.unique(rows * width + columns, return_inverse=True)
        step = max(1, CHUNK_PIXELS // (height * width))
        for start in range(0, len(members), step):
            indices = members[start : start + step]
            values = read(indices, pixels).to(torch.float64)
            own = torch.as_tensor(indices, device=values.device)
            weight = (fixations.n[None, :] != own[:, None]).long()
            position, valid = fixations.padded(indices)
            less, equal = counts_against_negatives(values, where, weight, where[position], ties)
            total = weight.sum(1, keepdim=True)
            value = auc_from_counts(less, equal, total.clamp_min(1))
            value = torch.where(total > 0, value, float("nan"))
            per_fixation[position[valid]] = value[valid]
    return MetricResult.from_fixations("sAUC", per_fixation, fixations.n, len(sizes))
