"""Log-likelihood, information gain and explained information gain of probabilistic models.

A model is given by its log densities (natural log per pixel, each image's ``exp`` summing to 1).
A fixation's log-likelihood is the log density of the pixel it falls in, ``log p[int(y), int(x)]``
(nats per fixation; the pixel's probability mass, as in pysaliency). Information gain compares two
models on the same fixations:

    IG = (LL_model - LL_baseline) / ln 2        bits per fixation

with the uniform density (``log p = -log(H * W)``) as the default baseline. Averaged over all
fixations (the benchmark's convention for IG and LL) or per image, then over images; `MetricResult`
gives both. A fixation on a pixel of zero density has ``LL = -inf``, and so has every average
containing it; that is the correct value, not an error.
"""

from __future__ import annotations

import math

import torch

from ..errors import EvaluationError
from .inputs import (
    ArrayLike,
    Maps,
    MapsLike,
    ScoredFixations,
    read_at_fixations,
)
from .results import ExplainedInformationGain, MetricResult


def log_likelihood(log_densities: MapsLike, x: ArrayLike, y: ArrayLike, n: ArrayLike) -> MetricResult:
    """Log-likelihood of the fixations under the model, in nats per fixation.

    ``log_densities``: (B, H, W) or a list of (H, W) natural-log densities (``-inf`` allowed).
    ``x``, ``y``, ``n``: (F,) column, row (float pixels) and image index of each fixation.
    """
    maps = Maps(log_densities, "log_densities", allow_neg_inf=True)
    fixations = ScoredFixations(x, y, n, maps.sizes, maps.device)
    values = read_at_fixations(maps, fixations)
    return MetricResult.from_fixations("LL", values, fixations.n, len(maps))


def information_gain(
    log_densities: MapsLike,
    x: ArrayLike,
    y: ArrayLike,
    n: ArrayLike,
    baseline: MapsLike | None = None,
) -> MetricResult:
    """Information gain of the model over a baseline, in bits per fixation.

    ``baseline``: ``None`` for the uniform density, or the baseline model's log densities
    (a centre-bias model, or any other model) with the same image sizes as ``log_densities``.
    IG of a model against itself is exactly 0.
    """
    maps = Maps(log_densities, "log_densities", allow_neg_inf=True)
    fixations = ScoredFixations(x, y, n, maps.sizes, maps.device)
    model = read_at_fixations(maps, fixations)
    reference = baseline_log_likelihoods(baseline, maps, fixations)
    return MetricResult.from_fixations("IG", (model - reference) / math.log(2), fixations.n, len(maps))


def baseline_log_likelihoods(baseline: MapsLike | None, maps: Maps, fixations: ScoredFixations) -> torch.Tensor:
    """(F,) float64 log-likelihoods (nats) of the fixations under ``baseline`` (``None``: uniform)."""
    if baseline is None:
        return -torch.log((fixations.heights * fixations.widths).to(torch.float64))[fixations.n]
    base = Maps(baseline, "baseline", allow_neg_inf=True)
    if base.sizes != maps.sizes:
        raise EvaluationError(
            "baseline: needs one log density per image with the same sizes as log_densities, "
            f"got {len(base)} maps for {len(maps)} images or different sizes"
        )
    if base.device != maps.device:
        raise EvaluationError(f"baseline: is on {base.device}, log_densities on {maps.device}; put both on one device")
    return read_at_fixations(base, fixations)


def explained_information_gain(
    ll_model: ArrayLike,
    ll_centerbias: ArrayLike,
    ll_gold_standard: ArrayLike,
    n: ArrayLike,
    num_images: int | None = None,
) -> ExplainedInformationGain:
    """How much of the explainable information gain a model explains.

    ``IG(model vs centre bias) / IG(gold standard vs centre bias)``, from the per-fixation
    log-likelihoods (nats, (F,) each, same fixations and order) of the model, the centre-bias model
    and the gold standard (which predicts each observer's fixations from the other observers').
    ``n``: (F,) image index per fixation; ``num_images`` defaults to ``max(n) + 1``.
    Returns the ratio overall (IGs averaged over fixations, and over images) and per image.
    """
    n_tensor = torch.as_tensor(n).long().flatten()
    lls = [torch.as_tensor(v).to(torch.float64).flatten().to(n_tensor.device) for v in (ll_model, ll_centerbias, ll_gold_standard)]
    if any(len(v) != len(n_tensor) for v in lls):
        raise EvaluationError(
            "explained_information_gain: the three log-likelihood arrays and n must have one entry per fixation, "
            f"got lengths {[len(v) for v in lls]} and {len(n_tensor)}"
        )
    if len(n_tensor) == 0:
        raise EvaluationError("explained_information_gain: no fixations given")
    if int(n_tensor.min()) < 0:
        raise EvaluationError("explained_information_gain: image indices n must be >= 0")
    num_images = int(n_tensor.max()) + 1 if num_images is None else int(num_images)
    if int(n_tensor.max()) >= num_images:
        raise EvaluationError(f"explained_information_gain: n has indices >= num_images ({num_images})")
    model_ll, centerbias_ll, gold_ll = lls
    model = MetricResult.from_fixations("IG", (model_ll - centerbias_ll) / math.log(2), n_tensor, num_images)
    gold = MetricResult.from_fixations("IG", (gold_ll - centerbias_ll) / math.log(2), n_tensor, num_images)
    return ExplainedInformationGain(
        per_image=model.per_image / gold.per_image,
        over_fixations=model.mean_over_fixations / gold.mean_over_fixations,
        over_images=model.mean_over_images / gold.mean_over_images,
        model=model,
        gold_standard=gold,
    )

