"""evaluate_predictions with the benchmark's centre-bias convention: IG vs centre bias equals the
IG against pysaliency's CrossvalidatedBaselineModel, written out literally with scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.special import logsumexp

from deepgaze_hub.evaluation import CenterBiasConvention, evaluate_predictions
from deepgaze_hub.errors import EvaluationError


def literal_crossvalidated(dataset, index, bandwidth, eps):
    fixations, sizes = dataset.fixations, dataset.image_sizes
    height, width = (int(v) for v in sizes[index])
    keep = fixations.image != index
    u = fixations.x[keep] / sizes[fixations.image[keep], 1]
    v = fixations.y[keep] / sizes[fixations.image[keep], 0]
    counts = np.zeros((height, width))
    for ui, vi in zip(u, v):
        counts[int(vi * height), int(ui * width)] += 1
    blurred = gaussian_filter(counts, [bandwidth * height, bandwidth * width]) * (1 - eps) + eps * 1.0 / (height * width)
    return np.log(blurred) - logsumexp(np.log(blurred))


def test_ig_vs_pysaliency_centre_bias(synthetic_dataset):
    dataset = synthetic_dataset
    torch.manual_seed(0)
    predictions = []
    for height, width in dataset.image_sizes:
        logits = torch.randn(int(height) // 8, int(width) // 8, dtype=torch.float64).repeat_interleave(8, 0).repeat_interleave(8, 1)
        predictions.append((logits - logits.logsumexp((0, 1))).float())
    bandwidth, eps = 0.03, 1e-12
    report = evaluate_predictions(
        predictions, dataset, metrics=["IG", "LL"], gold_standard=False, progress=False,
        centerbias=CenterBiasConvention("pysaliency", bandwidth, eps),
    )
    fixations = dataset.fixations
    baseline = np.empty(len(fixations))
    model = np.empty(len(fixations))
    for i in range(len(dataset)):
        own = np.flatnonzero(fixations.image == i)
        rows, cols = fixations.y[own].astype(int), fixations.x[own].astype(int)
        baseline[own] = literal_crossvalidated(dataset, i, bandwidth, eps)[rows, cols]
        model[own] = predictions[i].double().numpy()[rows, cols]
    expected = np.mean((model - baseline) / math.log(2))  # pysaliency: information_gain, average="fixation"
    assert report.rows["model"]["IG vs centre bias"] == pytest.approx(expected, abs=1e-9)
    assert report.rows["centre bias"]["LL"] == pytest.approx(baseline.mean(), abs=1e-9)
    assert report.settings["centre_bias"] == {
        "convention": "pysaliency", "bandwidth": bandwidth, "eps": eps, "scored": report.settings["centre_bias"]["scored"],
    }
    assert any("pysaliency CrossvalidatedBaselineModel" in note and "eps 1e-12" in note for note in report.notes)
    assert "pysaliency CrossvalidatedBaselineModel" in report.to_markdown()


def test_convention_defaults_and_refusals():
    convention = CenterBiasConvention("pysaliency")
    assert convention.bandwidth == pytest.approx(10**-1.6668) and convention.eps == pytest.approx(10**-14.88)
    with pytest.raises(EvaluationError, match="one of"):
        CenterBiasConvention("kde")
    with pytest.raises(EvaluationError, match="only with 'pysaliency'"):
        CenterBiasConvention("fit", bandwidth=0.02)
    with pytest.raises(EvaluationError, match="bandwidth must be > 0"):
        CenterBiasConvention("pysaliency", bandwidth=-1.0)
