"""Scoring a probabilistic model on every benchmark metric from its log densities.

Each metric is computed on the saliency map the benchmark derives for it from the density (see
`deepgaze_hub.evaluation.saliency_maps`), with the benchmark's conventions: AUC and sAUC on
equalised maps (ties ordered by pixel index, ``ties="index"``), fixation metrics averaged per image
except IG and LL (per fixation), empirical maps blurred by 23.99 px, model maps for CC/KLDiv by 24 px.
Derived maps are formed one chunk of images at a time, so memory stays bounded whatever the dataset.

Consequences of matching the benchmark that may surprise:

* ties are ranked by pixel index, not counted as halves: a density with flat regions (such as the
  2 x 2 blocks of DeepGaze's nearest upsampling) scores slightly differently per fixation than with
  ``auc(..., ties="average")``, and a *uniform* model's AUC is not 0.5 but depends on where the
  fixations are (lower rows rank higher); the equalised map's rank of equal values is by position.
* AUC ranks ``log p`` rather than ``p``: the same order, except where ``exp`` would round two
  distinct float64 log values to one density (float32 inputs cannot);
* SIM uses the CC map, not the benchmark's numerically optimised SIM map (see `saliency_maps`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch

from ..errors import EvaluationError
from .information import baseline_log_likelihoods
from .inputs import (
    ArrayLike,
    Maps,
    MapsLike,
    ScoredFixations,
    read_at_fixations,
)
from .metrics import (
    MAP_METRICS,
    auc_chunk,
    empirical_reference,
    map_chunk_scores,
    nss_chunk,
    shuffled_auc_result,
)
from .results import MetricResult
from .saliency_maps import (
    EMPIRICAL_SIGMA,
    MODEL_SIGMA,
    EmpiricalCache,
    ShuffledBaseline,
    blurred_density_chunk,
    empirical_chunk,
    grid_pixels,
    upsampled_grid,
)
from .scratch import Scratch

#: Every metric `evaluate_log_densities` computes, in the benchmark's table order.
METRICS = ("IG", "LL", "AUC", "sAUC", "NSS", "CC", "KLDiv", "SIM")


def evaluate_log_densities(
    log_densities: MapsLike,
    x: ArrayLike,
    y: ArrayLike,
    n: ArrayLike,
    *,
    metrics: Sequence[str] = METRICS,
    baseline: MapsLike | None = None,
    model_sigma: float = MODEL_SIGMA,
    empirical_sigma: float = EMPIRICAL_SIGMA,
    shuffle_compute_size: tuple[int, int] | None = None,
    empirical_cache: EmpiricalCache | None = None,
) -> dict[str, MetricResult]:
    """Score a model's log densities on the fixations: ``{metric name: MetricResult}``.

    ``log_densities``: (B, H, W) or a list of (H, W) natural-log densities, one per image, each
    summing to 1 after ``exp``. ``x``, ``y``, ``n``: (F,) column, row (float pixels) and image
    index per fixation. ``metrics``: any of `METRICS`. ``baseline``: log densities of the model IG
    is measured against (default: uniform; pass the centre bias for IG over the centre bias).
    ``model_sigma`` / ``empirical_sigma``: blur (pixels) of the CC/KLDiv/SIM model map and of the
    empirical maps (benchmark: 24 / 23.99 on MIT images; use 40 for CAT2000).
    ``shuffle_compute_size``: see `shuffled_baseline_log_densities` (sAUC needs >= 2 images).
    ``empirical_cache``: an `EmpiricalCache` shared by the calls that score several models on the
    same fixations, so that the empirical maps of CC/KLDiv/SIM are made once (same results).

    Units: IG bits per fixation, LL nats per fixation, KLDiv nats per image, the rest unitless.
    Images without fixations are NaN in ``per_image`` and left out of every average.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise EvaluationError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    maps = Maps(log_densities, "log_densities", allow_neg_inf=True)
    fixations = ScoredFixations(x, y, n, maps.sizes, maps.device)
    results = _information_scores(maps, fixations, metrics, baseline)
    results.update(_chunked_scores(maps, fixations, metrics, model_sigma, empirical_sigma, empirical_cache))
    if "sAUC" in metrics:
        results["sAUC"] = _shuffled_auc(maps, fixations, shuffle_compute_size)
    return {name: results[name] for name in METRICS if name in results}


def _information_scores(
    maps: Maps, fixations: ScoredFixations, metrics: Sequence[str], baseline: MapsLike | None
) -> dict[str, MetricResult]:
    """LL (nats/fixation) and IG vs ``baseline`` (bits/fixation), each read at the fixations."""
    results: dict[str, MetricResult] = {}
    if "LL" in metrics or "IG" in metrics:
        log_likelihoods = read_at_fixations(maps, fixations)
        if "LL" in metrics:
            results["LL"] = MetricResult.from_fixations("LL", log_likelihoods, fixations.n, len(maps))
        if "IG" in metrics:
            reference = baseline_log_likelihoods(baseline, maps, fixations)
            results["IG"] = MetricResult.from_fixations("IG", (log_likelihoods - reference) / math.log(2), fixations.n, len(maps))
    return results


def _chunked_scores(
    maps: Maps,
    fixations: ScoredFixations,
    metrics: Sequence[str],
    model_sigma: float,
    empirical_sigma: float,
    empirical_cache: EmpiricalCache | None,
) -> dict[str, MetricResult]:
    """AUC and NSS (per fixation) and CC, KLDiv, SIM (per image), one chunk of equal-size maps at a time.

    Maps that are nearest-upsampled grids (DeepGaze's output) get NSS and the blurred model map
    computed on the grid; the map metrics run a few images at a time.
    """
    per_fixation = {m: _nan(len(fixations), maps.device) for m in ("AUC", "NSS") if m in metrics}
    per_image = {m: _nan(len(maps), maps.device) for m in MAP_METRICS if m in metrics}
    if per_fixation or per_image:
        scratch = Scratch()
        for indices, chunk in maps.chunks(fixations.images_with_fixations()):
            position, valid = fixations.padded(indices)
            pixel = fixations.padded_pixels(position, valid)
            grid = upsampled_grid(chunk) if ("NSS" in per_fixation or per_image) else None
            if "AUC" in per_fixation:  # ranks of log p are the ranks of p
                per_fixation["AUC"][position[valid]] = auc_chunk(chunk, pixel, valid, "index", scratch)[valid]
            if "NSS" in per_fixation:
                if grid is None:
                    values = nss_chunk(chunk, pixel, scratch, exp=True)
                else:
                    values = nss_chunk(grid, grid_pixels(pixel, chunk.shape[2]), scratch, exp=True)
                per_fixation["NSS"][position[valid]] = values[valid]
            if per_image:
                _map_scores(chunk, grid, indices, fixations, per_image, (model_sigma, empirical_sigma), empirical_cache)
    results = {name: MetricResult.from_fixations(name, values, fixations.n, len(maps)) for name, values in per_fixation.items()}
    for name, values in per_image.items():
        results[name] = MetricResult(name=name, per_image=values, fixation_counts=fixations.counts)
    return results


#: Pixels of the CC/KLDiv/SIM work done together (bounds their float64 work maps).
MAP_PIXELS = 1 << 20


def _map_scores(
    chunk: torch.Tensor,
    grid: torch.Tensor | None,
    indices: list[int],
    fixations: ScoredFixations,
    per_image: dict[str, torch.Tensor],
    sigmas: tuple[float, float],
    empirical_cache: EmpiricalCache | None,
) -> None:
    """CC, KLDiv and SIM of the chunk's images into ``per_image`` (model map vs empirical map).

    ``sigmas``: (model, empirical) blur in pixels. The empirical side (`empirical_reference`) comes
    from ``empirical_cache`` when one is given (the same for every model scored on these fixations)."""
    model_sigma, empirical_sigma = sigmas
    size = tuple(chunk.shape[1:])
    step = max(1, MAP_PIXELS // (size[0] * size[1]))
    prepare = partial(empirical_reference, centred="CC" in per_image, overwrite=True)
    for start in range(0, len(indices), step):
        part = slice(start, start + step)
        model_map = blurred_density_chunk(chunk[part], model_sigma, "constant", None if grid is None else grid[part])
        if empirical_cache is None:
            reference = prepare(empirical_chunk(fixations, indices[part], size, empirical_sigma, "reflect"))
        else:
            reference = empirical_cache.get(fixations, indices[part], size, empirical_sigma, "reflect", prepare, "CC" in per_image)
        index = torch.as_tensor(indices[part], device=chunk.device)
        for name, values in map_chunk_scores(model_map, None, list(per_image), overwrite=True, reference=reference).items():
            per_image[name][index] = values


def _shuffled_auc(maps: Maps, fixations: ScoredFixations, shuffle_compute_size: tuple[int, int] | None) -> MetricResult:
    """sAUC of the log density divided by the shuffled baseline (the other images' mean density)."""
    shuffled = ShuffledBaseline(maps, shuffle_compute_size)

    def read(indices: list[int], pixels: torch.Tensor) -> torch.Tensor:
        chunk = maps.stack(indices)
        own = chunk.reshape(len(indices), -1).index_select(1, pixels).to(torch.float64)
        return own - shuffled.log_density_at(indices, chunk, pixels, own)

    return shuffled_auc_result(fixations, maps.sizes, read, "index")


def _nan(length: int, device) -> torch.Tensor:
    return torch.full((length,), float("nan"), dtype=torch.float64, device=device)
