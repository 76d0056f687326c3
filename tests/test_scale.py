"""The working resolution: viewing geometry, working sizes, image and log-density resampling."""

from __future__ import annotations

import math

import pytest
import torch

from deepgaze_hub.errors import ImageError
from deepgaze_hub.io.scale import pixels_per_degree, resize_image, resize_log_density, working_size


def test_pixels_per_degree_formula():
    # 1920 px over 53 cm seen from 60 cm: 36.2 px/cm, one degree spans 2 * 60 * tan(0.5 deg) = 1.0472 cm
    assert pixels_per_degree(1920, 53, 60) == pytest.approx(1920 / 53 * 2 * 60 * math.tan(math.radians(0.5)))
    assert pixels_per_degree(1920, 53, 60) == pytest.approx(37.937, abs=1e-3)
    assert pixels_per_degree(1000, 10, 120) == pytest.approx(2 * pixels_per_degree(1000, 10, 60))
    for bad in ((0, 53, 60), (1920, -1, 60), (1920, 53, float("nan"))):
        with pytest.raises(ValueError):
            pixels_per_degree(*bad)


def test_working_size_shrinks_only_larger_images():
    phone = working_size((3000, 4000), long_side=1024, training_ppd=35)
    assert phone.working == (768, 1024) and phone.factor == pytest.approx(0.256) and phone.resized
    portrait = working_size((4032, 3024), long_side=1024, training_ppd=35)
    assert portrait.working == (1024, 768)
    for size in ((768, 1024), (600, 800), (1024, 1024), (50, 60)):
        kept = working_size(size, long_side=1024, training_ppd=35)
        assert kept.working == size and not kept.resized and kept.reason == "as is"
    assert working_size((3000, 4000), long_side=None).working == (3000, 4000)  # a model that does not know
    full = working_size((3000, 4000), long_side=1024, training_ppd=35, full_size=True)
    assert full.working == (3000, 4000) and "full size" in full.reason


def test_working_size_for_a_viewing_geometry_goes_both_ways():
    half = working_size((768, 1024), long_side=1024, training_ppd=35, pixels_per_degree=70)
    assert half.working == (384, 512) and half.factor == 0.5
    double = working_size((300, 400), long_side=1024, training_ppd=35, pixels_per_degree=17.5)
    assert double.working == (600, 800)
    assert working_size((300, 400), long_side=1024, training_ppd=35, pixels_per_degree=35).working == (300, 400)
    with pytest.raises(ImageError, match="does not record the pixels per degree"):
        working_size((300, 400), long_side=None, training_ppd=None, pixels_per_degree=30)
    with pytest.raises(ValueError):
        working_size((300, 400), long_side=1024, training_ppd=35, pixels_per_degree=0)


def test_scaling_reports_sizes_as_width_height():
    info = working_size((3000, 4000), long_side=1024, training_ppd=35).to_dict()
    assert info["original_size"] == [4000, 3000] and info["working_size"] == [1024, 768]
    assert "4000x3000 predicted at 1024x768" in working_size((3000, 4000), long_side=1024).describe()


def test_resize_image_keeps_range_and_identity():
    pixels = torch.rand(3, 90, 120) * 255
    assert resize_image(pixels, (90, 120)) is pixels
    small = resize_image(pixels, (30, 40))
    assert small.shape == (3, 30, 40) and small.dtype == torch.float32
    assert 0 <= float(small.min()) and float(small.max()) <= 255
    # antialiased: a 3x3 box average of a checkerboard is flat grey, not aliased black or white
    board = ((torch.arange(90)[:, None] + torch.arange(120)[None]) % 2).float().expand(3, 90, 120) * 255
    assert float(resize_image(board, (30, 40)).std()) < 30
    assert resize_image(torch.rand(2, 3, 20, 20) * 255, (10, 10)).shape == (2, 3, 10, 10)


def test_resize_log_density_is_normalised_and_smooth():
    torch.manual_seed(0)
    small = torch.randn(2, 48, 64)
    small = small - small.logsumexp(dim=(-2, -1), keepdim=True)
    assert resize_log_density(small, (48, 64)) is small
    big = resize_log_density(small, (480, 640)).double()
    assert big.shape == (2, 480, 640)
    torch.testing.assert_close(big.exp().sum(dim=(-2, -1)), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-5)
    # resampling in log space: the per-pixel density keeps the shape of the small one, 100x fewer mass per pixel
    back = resize_log_density(big.float(), (48, 64))
    assert float((back - small).abs().mean()) < 0.2
    # a uniform density stays uniform
    flat = torch.full((30, 40), -math.log(1200))
    torch.testing.assert_close(resize_log_density(flat, (300, 400)), torch.full((300, 400), -math.log(120000)))
