"""Baseline models fitted to fixation data: the centre bias and the gold standard.

* `fit_centerbias` -> `CenterBiasModel`: image-independent density (normalised-coordinate KDE +
  uniform), cross-validated over images; ``.template()`` for `DeepGaze.set_centerbias`,
  ``.log_density((H, W))`` at any size, ``.log_likelihoods(dataset)`` per fixation.
* `BenchmarkCenterBias`: pysaliency's ``BaselineModel`` / ``CrossvalidatedBaselineModel`` with
  fixed bandwidth and eps (e.g. `MIT1003_SETTING`), the baseline of the benchmark's IG.
* `fit_gold_standard` -> `GoldStandardModel`: each observer predicted from the other observers on
  the same image, mixed with the centre bias; the ceiling for explained information gain.

Log-likelihoods are natural logs (nats) of the probability of the fixation's pixel; subtract
``-log(H * W)`` and divide by ln 2 for bits per fixation relative to a uniform density.
"""

from .benchmark_centerbias import MIT1003_SETTING, SALICON_SETTING, BenchmarkCenterBias
from .centerbias import CenterBiasModel, fit_centerbias
from .gold_standard import GoldStandardModel, fit_gold_standard

__all__ = ["MIT1003_SETTING", "SALICON_SETTING", "BenchmarkCenterBias", "CenterBiasModel", "GoldStandardModel", "fit_centerbias", "fit_gold_standard"]
