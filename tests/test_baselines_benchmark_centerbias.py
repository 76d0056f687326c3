"""The benchmark's centre bias (pysaliency's BaselineModel / CrossvalidatedBaselineModel conventions)
against a literal scipy transcription of its definition, and the banded Gaussian blur."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.special import logsumexp

from deepgaze_hub.baselines.benchmark_centerbias import MIT1003_SETTING, BenchmarkCenterBias
from deepgaze_hub.baselines.blur import gaussian_blur, gaussian_matrix
from deepgaze_hub.data.fixations import Fixations
from deepgaze_hub.errors import DatasetError


def literal(u, v, size, bandwidth, eps):
    """The definition, step by step with scipy."""
    height, width = size
    counts = np.zeros(size)
    for ui, vi in zip(u, v):
        counts[int(vi * height), int(ui * width)] += 1
    blurred = gaussian_filter(counts, [bandwidth * height, bandwidth * width])  # mode reflect, truncate 4
    blurred *= 1 - eps
    blurred += eps * 1.0 / (height * width)
    log = np.log(blurred)
    return log - logsumexp(log)


def make_data(seed=0, images=12, sizes=((30, 40), (24, 32), (30, 40))):
    rng = np.random.default_rng(seed)
    image_sizes = np.array([sizes[i % len(sizes)] for i in range(images)])
    image, xs, ys = [], [], []
    for i, (h, w) in enumerate(image_sizes):
        count = int(rng.integers(0, 9)) if i != 3 else 0  # image 3 has no fixations
        centre = rng.normal([w / 2, h / 2], [w / 6, h / 6], size=(count, 2))
        xs.append(np.clip(centre[:, 0], 0, w - 1e-9))
        ys.append(np.clip(centre[:, 1], 0, h - 1e-9))
        image.append(np.full(count, i))
    xs[0] = np.append(xs[0], [0.0, image_sizes[0][1] - 1e-12])  # both edges
    ys[0] = np.append(ys[0], [image_sizes[0][0] - 1e-12, 0.0])
    image[0] = np.append(image[0], [0, 0])
    fixations = Fixations.build(np.concatenate(image), np.concatenate(xs), np.concatenate(ys))
    return fixations, image_sizes


@pytest.mark.parametrize("bandwidth,eps", [MIT1003_SETTING, (0.1, 1e-3), (0.004, 1e-20)])
def test_maps_equal_the_literal_definition(bandwidth, eps):
    fixations, sizes = make_data()
    model = BenchmarkCenterBias.from_data((fixations, sizes), bandwidth, eps)
    u, v = fixations.x / sizes[fixations.image, 1], fixations.y / sizes[fixations.image, 0]
    for size in [(30, 40), (7, 5), (64, 48)]:
        expected = literal(u, v, size, bandwidth, eps)
        np.testing.assert_allclose(model.log_density(size).numpy(), expected, rtol=0, atol=1e-11)
    maps = list(model.crossvalidated_log_densities(sizes))
    for i, size in enumerate(sizes):
        keep = fixations.image != i
        expected = literal(u[keep], v[keep], tuple(size), bandwidth, eps)
        np.testing.assert_allclose(maps[i].numpy(), expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(model.crossvalidated_log_density(i, size).numpy(), expected, rtol=0, atol=1e-11)
        assert float(torch.logsumexp(maps[i].reshape(-1), 0)) == pytest.approx(0, abs=1e-12)


def test_isolated_fixation_is_recomputed_exactly():
    """A pixel only the scored image's own kernels reach: the subtraction would leave round-off
    where the definition has exactly eps / (H W); the direct recomputation gets it right."""
    sizes = np.array([(200, 200)] * 3)
    fixations = Fixations.build([0, 1, 2, 2], [5.5, 100.5, 101.5, 99.5], [5.5, 100.5, 99.5, 101.5])
    model = BenchmarkCenterBias.from_data((fixations, sizes), 0.01, 1e-15)
    maps = list(model.crossvalidated_log_densities(sizes))
    u, v = fixations.x / 200, fixations.y / 200
    expected = literal(u[1:], v[1:], (200, 200), 0.01, 1e-15)
    assert maps[0][5, 5] == pytest.approx(expected[5, 5], abs=1e-9)
    assert expected[5, 5] < -40  # only the uniform term is left there


def test_bad_parameters_are_refused():
    fixations, sizes = make_data()
    with pytest.raises(DatasetError, match="bandwidth"):
        BenchmarkCenterBias.from_data((fixations, sizes), 0.0, 1e-10)
    with pytest.raises(DatasetError, match="eps"):
        BenchmarkCenterBias.from_data((fixations, sizes), 0.02, 1.0)


@pytest.mark.parametrize("mode", ["reflect", "constant", "nearest"])
@pytest.mark.parametrize("sigma,size", [(3.0, (50, 300)), (24.0, (90, 70)), (0.4, (20, 30)), (7.0, (5, 3))])
def test_banded_blur_equals_the_dense_matrices_and_scipy(mode, sigma, size):
    torch.manual_seed(0)
    maps = torch.rand(2, *size, dtype=torch.float64) ** 8  # values over many orders of magnitude
    dense = gaussian_matrix(size[0], sigma, mode) @ maps @ gaussian_matrix(size[1], sigma, mode).T
    banded = gaussian_blur(maps, sigma, mode)
    assert torch.allclose(banded, dense, rtol=1e-12, atol=0)
    for k in range(2):
        expected = gaussian_filter(maps[k].numpy(), sigma, mode=mode)
        np.testing.assert_allclose(banded[k].numpy(), expected, rtol=1e-9, atol=1e-300)

