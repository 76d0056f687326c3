"""Overlays, contours, figures and fixation sampling."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub import sample_fixations
from deepgaze_hub.visualization import (
    density_overlay,
    fixation_figure,
    mass_contours,
    mass_thresholds,
    save_png,
    scatter_figure,
)
from deepgaze_hub.visualization.colormap import _ANCHORS, apply_colormap
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


def plain_overlay(rgb: np.ndarray, log_density: np.ndarray) -> np.ndarray:
    """The overlay's definition, computed plainly: dimmed image, colour blended by alpha, contours."""
    density = np.exp(log_density - log_density.max())
    density = density / density.sum()
    relative = np.sqrt(density / density.max()).astype(np.float32)
    colour = np.stack([np.rint(np.interp(relative, _ANCHORS[:, 0], _ANCHORS[:, c])) for c in (1, 2, 3)], axis=-1)
    alpha = (np.float32(0.25) + np.float32(0.6) * relative)[..., None]
    dimmed = rgb.astype(np.float32) * np.float32(0.55) + np.float32(30.0)
    out = dimmed * (1 - alpha) + colour.astype(np.float32) * alpha
    out[mass_contours(log_density, width=max(1, round(min(rgb.shape[:2]) / 250)))] = 255.0
    return np.rint(np.clip(out, 0, 255)).astype(np.uint8)


@pytest.mark.parametrize("size", [(60, 80), (300, 520)])
def test_overlay_pixels_are_the_plain_computation(size):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    log_density = gaussian_log_density(*size, cx=size[1] * 0.4, cy=size[0] * 0.6, s=size[0] / 5)
    log_density = log_density + rng.normal(0, 0.2, size)  # not symmetric: no ties between pixels
    expected = plain_overlay(rgb, log_density)
    np.testing.assert_array_equal(np.asarray(density_overlay(rgb, log_density)), expected)
    as_tensors = density_overlay(torch.from_numpy(rgb).permute(2, 0, 1).float(), torch.from_numpy(log_density))
    np.testing.assert_array_equal(np.asarray(as_tensors), expected)
    gray = np.asarray(density_overlay(rgb[..., 1], log_density))
    np.testing.assert_array_equal(gray, plain_overlay(np.repeat(rgb[..., 1:2], 3, axis=-1), log_density))


def plain_colormap(values: np.ndarray) -> np.ndarray:
    within = np.clip(values, 0, 1).astype(np.float64)
    return np.stack([np.rint(np.interp(within, _ANCHORS[:, 0], _ANCHORS[:, c])) for c in (1, 2, 3)], -1).astype(np.uint8)


def test_colormap_is_the_anchor_interpolation_rounded():
    rng = np.random.default_rng(4)
    edges = np.arange(1 << 14, dtype=np.float32) / np.float32(1 << 14)  # bin edges and their neighbours
    anchors = _ANCHORS[:, 0].astype(np.float32)
    hard = np.concatenate([edges, np.nextafter(edges, np.float32(1)), np.nextafter(edges, np.float32(0)), anchors,
                           np.nextafter(anchors, np.float32(0)), np.nextafter(anchors, np.float32(1))])  # fmt: skip
    values = np.concatenate([np.linspace(-0.5, 1.5, 20001), hard, rng.random(100_000 - 20001 - hard.size)])
    for dtype in (np.float64, np.float32):  # float32: 100000 values take the lookup
        given = values.astype(dtype).reshape(250, 400)
        for layout in (given, given.T, given[::2, 1::3]):
            colours = apply_colormap(layout)
            assert colours.dtype == np.uint8 and colours.shape == (*layout.shape, 3)
            np.testing.assert_array_equal(colours, plain_colormap(layout))
    small = values[:1000].astype(np.float32)  # interpolated directly
    np.testing.assert_array_equal(apply_colormap(small), plain_colormap(small))


def test_save_png_keeps_every_pixel(tmp_path):
    rng = np.random.default_rng(5)
    smooth = np.cumsum(rng.integers(-2, 3, (90, 130, 3)), axis=1).clip(0, 255).astype(np.uint8)
    for pixels in (rng.integers(0, 256, (90, 130, 3), dtype=np.uint8), smooth, np.full((5, 7, 3), 200, np.uint8)):
        buffer = io.BytesIO()
        save_png(Image.fromarray(pixels), buffer)
        assert buffer.getvalue().startswith(b"\x89PNG")
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(buffer.getvalue()))), pixels)
    save_png(Image.fromarray(smooth), tmp_path / "smooth.png")
    with Image.open(tmp_path / "smooth.png") as written:
        written.verify()


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
