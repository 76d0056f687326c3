"""What a metric returns: its per-image (and per-fixation) values and both dataset averages."""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Units of the metrics that have one (the others are unitless).
UNITS = {"LL": "nats/fixation", "IG": "bits/fixation", "KLDiv": "nats"}
#: The averaging each metric uses on the MIT/Tübingen benchmark (pysaliency's ``average=``).
BENCHMARK_AVERAGE = {
    "LL": "fixation",
    "IG": "fixation",
    "AUC": "image",
    "sAUC": "image",
    "NSS": "image",
    "CC": "image",
    "KLDiv": "image",
    "SIM": "image",
}


@dataclass(frozen=True)
class MetricResult:
    """Scores of one metric on a set of images.

    * ``per_image`` (B,) float64: the score of each image; for fixation-based metrics the mean over
      that image's fixations. NaN where the metric is undefined for the image (no fixations, or for
      sAUC no fixations on other images).
    * ``per_fixation`` (F,) float64 in the order the fixations were given, or ``None`` for metrics
      that compare whole maps (CC, KLDiv, SIM).
    * ``fixation_counts`` (B,) int64: fixations per image (``None`` when only maps were given).

    Two dataset averages, named for what they weight equally:

    * `mean_over_images`: the mean of the per-image values (images where the metric is undefined
      are left out, like pysaliency's ``average='image'``);
    * `mean_over_fixations`: the mean over all fixations (pysaliency's ``average='fixation'``), so
      images with many fixations weigh more; ``None`` for map-based metrics.

    `value` is the one the MIT/Tübingen benchmark reports for this metric (``average`` says which).
    """

    name: str
    per_image: torch.Tensor
    per_fixation: torch.Tensor | None = None
    fixation_counts: torch.Tensor | None = None

    @classmethod
    def from_fixations(cls, name: str, per_fixation: torch.Tensor, n: torch.Tensor, num_images: int) -> MetricResult:
        """Build the result of a fixation-based metric from its (F,) values and image indices ``n``."""
        per_fixation = per_fixation.to(torch.float64)
        return cls(
            name=name,
            per_image=per_image_means(per_fixation, n, num_images),
            fixation_counts=torch.bincount(n, minlength=num_images),
            per_fixation=per_fixation,
        )

    @property
    def unit(self) -> str:
        """``"bits/fixation"`` (IG), ``"nats/fixation"`` (LL), ``"nats"`` (KLDiv, per image), else ``""``."""
        return UNITS.get(self.name, "")

    @property
    def average(self) -> str:
        return BENCHMARK_AVERAGE.get(self.name, "image")

    @property
    def mean_over_images(self) -> float:
        return _nanmean(self.per_image)

    @property
    def mean_over_fixations(self) -> float | None:
        return None if self.per_fixation is None else _nanmean(self.per_fixation)

    @property
    def value(self) -> float:
        """The dataset score under the benchmark's averaging for this metric."""
        if self.average == "fixation" and self.per_fixation is not None:
            return self.mean_over_fixations
        return self.mean_over_images


@dataclass(frozen=True)
class ExplainedInformationGain:
    """Explained information gain: IG(model vs centre bias) / IG(gold standard vs centre bias).

    ``per_image`` (B,) float64: the ratio of the two per-image IGs, NaN for images without
    fixations (unstable where the gold standard's gain on an image is close to zero).
    ``over_fixations``: the ratio of the two IGs averaged over all fixations (the benchmark's IG
    averaging); ``over_images``: the ratio of the two IGs averaged over images. Fractions, 1.0 = as good as the
    gold standard; ``model``, ``gold_standard``: the two IGs (bits per fixation).
    """

    per_image: torch.Tensor
    over_fixations: float
    over_images: float
    model: MetricResult
    gold_standard: MetricResult


def _nanmean(values: torch.Tensor) -> float:
    kept = values[~torch.isnan(values)]
    return float(kept.mean()) if len(kept) else float("nan")


def per_image_means(per_fixation: torch.Tensor, n: torch.Tensor, num_images: int) -> torch.Tensor:
    """(B,) mean of ``per_fixation`` over each image's fixations; NaN for images without any."""
    sums = torch.zeros(num_images, dtype=torch.float64, device=per_fixation.device)
    sums.index_add_(0, n, per_fixation)
    counts = torch.bincount(n, minlength=num_images).to(torch.float64)
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan")))
