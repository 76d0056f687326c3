"""Overlays, contours, figures and fixation sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepgaze_hub import sample_fixations
from deepgaze_hub.visualization import density_overlay, fixation_figure, mass_contours, mass_thresholds, scatter_figure
from deepgaze_hub.visualization.figures import nice_ticks


def gaussian_log_density(height=60, width=80, cx=30.0, cy=20.0, s=6.0):
    yy, xx = np.mgrid[:height, :width]
    log_density = -((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s**2)
    return log_density - np.log(np.exp(log_density).sum())


def test_mass_thresholds_split_the_mass_into_quarters():
    log_density = gaussian_log_density()
    density = np.exp(log_density)
    for level, threshold in zip((0.25, 0.5, 0.75), mass_thresholds(log_density)):
        assert abs(density[density >= threshold].sum() - level) < 0.02


def test_contours_enclose_the_peak_and_are_lines():
    lines = mass_contours(gaussian_log_density())
    assert lines.any() and not lines[20, 30]  # the peak is inside, not on a line
    assert lines.sum() < 0.2 * lines.size


def test_overlay_is_an_image_of_the_input_size():
    rgb = np.full((60, 80, 3), 128, dtype=np.uint8)
    picture = density_overlay(rgb, gaussian_log_density(), fixations=([5.5], [7.2]))
    assert picture.size == (80, 60) and picture.mode == "RGB"
    with pytest.raises(ValueError, match="density"):
        density_overlay(rgb, gaussian_log_density(30, 40))


def test_sampled_fixations_follow_the_density_and_truncate_to_their_pixel():
    log_density = gaussian_log_density()
    xs, ys = sample_fixations(log_density, 4000, seed=1)
    assert xs.shape == (4000,) and (xs >= 0).all() and (xs < 80).all() and (ys < 60).all()
    # pixel (row 20, column 30) is the peak; positions are uniform inside pixels: mean at +0.5
    assert abs(xs.mean() - 30.5) < 0.3 and abs(ys.mean() - 20.5) < 0.3
    again = sample_fixations(torch.from_numpy(log_density), 4000, seed=1)
    np.testing.assert_array_equal(again[0], xs)
    assert not np.array_equal(sample_fixations(log_density, 4000, seed=2)[0], xs)


def test_nice_ticks_are_round_and_cover_the_range():
    ticks = nice_ticks(0.13, 3.7)
    assert ticks[0] <= 0.13 and ticks[-1] >= 3.7 and 3 <= len(ticks) <= 8
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0]) and steps[0] in (0.5, 1.0)


def test_figures_have_the_expected_panels_and_size():
    rgb = np.full((60, 80, 3), 100, dtype=np.uint8)
    log_density = gaussian_log_density()
    four = fixation_figure(rgb, log_density, ([1.0], [2.0]), ([3.0], [4.0]), log_density, title="x")
    two = fixation_figure(rgb, log_density, ([1.0], [2.0]))
    assert four.width > 2 * two.width - 40 and four.height > two.height
    plot = scatter_figure([1, 2, 3], [0.5, 1.0, 2.5], xlabel="gold", ylabel="model", size=400)
    assert plot.size == (400, 400)
