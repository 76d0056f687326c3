"""Which centre bias an evaluation measures "IG vs centre bias" against: `CenterBiasConvention`.

Two conventions (see docs/design.md, "Centre bias"):

* ``"fit"``: `fit_centerbias` on the dataset (pixel-integrated KDE truncated to the image, bandwidth
  and uniform weight chosen by leave-one-image-out likelihood), each image scored by the fit
  without its own fixations;
* ``"pysaliency"``: the benchmark's model with fixed parameters, `BenchmarkCenterBias`: each image
  scored by pysaliency's ``CrossvalidatedBaselineModel(bandwidth, eps)`` (leave one image out), so
  the IG equals what pysaliency reports against that model, e.g. with `MIT1003_SETTING`.

For both, the row's sAUC uses one map from all images (the fit / pysaliency's ``BaselineModel``):
leave-one-out maps of the other images would contain the very fixations being scored.
The per-fixation log-likelihoods of the pysaliency convention are read from its float64 maps, so
IG against it matches pysaliency to float64 precision; the maps handed to the other metrics are
float32 like the model's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..baselines import CenterBiasModel
from ..baselines.benchmark_centerbias import MIT1003_SETTING, BenchmarkCenterBias
from ..errors import EvaluationError

CONVENTIONS = ("fit", "pysaliency")


@dataclass(frozen=True)
class CenterBiasConvention:
    """The centre bias of "IG vs centre bias" and of the explained information gain.

    Attributes:
        kind: ``"fit"`` or ``"pysaliency"`` (module docstring).
        bandwidth: ``"pysaliency"`` only: kernel std as a fraction of image height / width
            (default: the MIT1003 benchmark's 10^-1.6668).
        eps: ``"pysaliency"`` only: uniform weight (default: MIT1003's 10^-14.88).
    """

    kind: Literal["fit", "pysaliency"] = "fit"
    bandwidth: float | None = None
    eps: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in CONVENTIONS:
            raise EvaluationError(f"centre-bias convention must be one of {CONVENTIONS}, got {self.kind!r}")
        if self.kind == "fit" and (self.bandwidth is not None or self.eps is not None):
            raise EvaluationError("centre-bias bandwidth and eps are fitted with the 'fit' convention; set them only with 'pysaliency'")
        if self.kind == "pysaliency":
            bandwidth = MIT1003_SETTING[0] if self.bandwidth is None else float(self.bandwidth)
            eps = MIT1003_SETTING[1] if self.eps is None else float(self.eps)
            if not (math.isfinite(bandwidth) and bandwidth > 0):
                raise EvaluationError(f"centre-bias bandwidth must be > 0 (a fraction of the image size), got {bandwidth}")
            if not (math.isfinite(eps) and 0 <= eps < 1):
                raise EvaluationError(f"centre-bias eps must be in [0, 1), got {eps}")
            object.__setattr__(self, "bandwidth", bandwidth)
            object.__setattr__(self, "eps", eps)

    def describe(self, fitted: CenterBiasModel) -> str:
        """One line for the report and the model card."""
        return describe_settings(self.settings(fitted))

    def settings(self, fitted: CenterBiasModel) -> dict[str, Any]:
        """The report's ``settings["centre_bias"]``."""
        if self.kind == "pysaliency":
            return {
                "convention": "pysaliency",
                "bandwidth": self.bandwidth,
                "eps": self.eps,
                "scored": "leave one image out (pysaliency CrossvalidatedBaselineModel; sAUC: BaselineModel on all images)",
            }
        return {
            "convention": "fit",
            "bandwidth": fitted.bandwidth,
            "uniform_weight": fitted.uniform_weight,
            "fitted_by": fitted.cv,
            "scored": "leave one image out (sAUC: the fit on all images)",
        }


def describe_settings(settings: dict[str, Any]) -> str:
    """One line naming the convention and its parameters, from a report's ``settings["centre_bias"]``."""
    if settings.get("convention") == "pysaliency":
        return (
            f"pysaliency CrossvalidatedBaselineModel (leave one image out), bandwidth {settings['bandwidth']:.6g}, "
            f"eps {settings['eps']:.6g}"
        )
    return (
        f"fitted KDE (deepgaze-hub), leave one image out, bandwidth {settings['bandwidth']:.6g}, "
        f"uniform weight {settings['uniform_weight']:.6g}"
    )


def centre_bias_maps(convention: CenterBiasConvention, fitted: CenterBiasModel, dataset) -> tuple[list[torch.Tensor], np.ndarray | None]:
    """(float32 (H, W) leave-one-image-out log density per image, float64 (F,) log-likelihood of
    every fixation of ``dataset`` in nats, or None when the maps' own values serve)."""
    if convention.kind == "fit":
        return list(fitted.crossvalidated_log_densities(dataset)), None
    model = BenchmarkCenterBias.from_data(dataset, convention.bandwidth, convention.eps)
    fixations = dataset.fixations
    log_likelihoods = np.empty(len(fixations))
    maps = []
    for index, log_density in enumerate(model.crossvalidated_log_densities(dataset.image_sizes)):
        own = np.flatnonzero(fixations.image == index)
        rows, cols = fixations.y[own].astype(np.int64), fixations.x[own].astype(np.int64)
        log_likelihoods[own] = log_density[torch.as_tensor(rows), torch.as_tensor(cols)].numpy()
        maps.append(log_density.float())
    return maps, log_likelihoods


def centre_bias_shared_maps(convention: CenterBiasConvention, fitted: CenterBiasModel, dataset) -> list[torch.Tensor]:
    """float32 (H, W) log density per image from *all* images' fixations (the row's sAUC maps)."""
    if convention.kind == "fit":
        make = fitted.log_density
    else:
        model = BenchmarkCenterBias.from_data(dataset, convention.bandwidth, convention.eps)

        def make(size):
            return model.log_density(size).float()

    cache: dict[tuple[int, int], torch.Tensor] = {}
    maps = []
    for height, width in dataset.image_sizes:
        key = int(height), int(width)
        if key not in cache:
            cache[key] = make(key)
        maps.append(cache[key])
    return maps
