"""Evaluation that matches the MIT/Tübingen saliency benchmark and pysaliency.

* `evaluate_model`: a model and its baselines (centre bias, gold standard, truth) on a dataset, every
  metric, optionally cross-validated; `EvaluationReport` and `write_report` for the table and files;
* `evaluate_log_densities`: every metric for a probabilistic model, each on its optimal saliency map;
* `log_likelihood`, `information_gain`, `explained_information_gain`: for log densities;
* `auc`, `sauc`, `nss`, `cc`, `kldiv`, `sim`: on plain saliency maps (classic models);
* `saliency_maps`: the metric-specific maps and empirical fixation maps;
* `export`: predictions to pysaliency's HDF5 model format and to MIT benchmark submissions.

Conventions: log densities are natural logs per pixel; maps are (B, H, W) or lists of (H, W);
fixations are ``x`` (column), ``y`` (row) float pixels and ``n`` (image index), read at
``map[int(y), int(x)]``. Results are `MetricResult` objects with per-image and per-fixation values
and both averages.
"""

from .centre_bias import CenterBiasConvention
from .crossval import CrossvalInfo, held_out_members
from .evaluate import evaluate_model, evaluate_predictions
from .export import export_mit_submission, export_pysaliency_hdf5
from .information import explained_information_gain, information_gain, log_likelihood
from .metrics import auc, cc, kldiv, nss, sauc, sim
from .probabilistic import METRICS, evaluate_log_densities
from .report import Column, EvaluationReport, Row, write_report
from .results import ExplainedInformationGain, MetricResult
from .saliency_maps import (
    blurred_density_maps,
    density_maps,
    empirical_saliency_maps,
    sauc_maps,
    shuffled_baseline_log_densities,
)

__all__ = [
    "METRICS",
    "CenterBiasConvention",
    "Column",
    "CrossvalInfo",
    "EvaluationReport",
    "ExplainedInformationGain",
    "MetricResult",
    "Row",
    "auc",
    "blurred_density_maps",
    "cc",
    "density_maps",
    "empirical_saliency_maps",
    "evaluate_log_densities",
    "evaluate_model",
    "evaluate_predictions",
    "held_out_members",
    "explained_information_gain",
    "export_mit_submission",
    "export_pysaliency_hdf5",
    "information_gain",
    "kldiv",
    "log_likelihood",
    "nss",
    "sauc",
    "sauc_maps",
    "shuffled_baseline_log_densities",
    "sim",
    "write_report",
]
