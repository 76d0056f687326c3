"""The model's centre-bias template: default, resizing, custom per call."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepgaze_hub.model.template import CenterBiasTemplate, default_centerbias_template

from conftest import make_tiny_model, random_images


def test_default_template_is_a_centred_normalised_density():
    template = default_centerbias_template((64, 48)).double()
    assert math.isclose(template.exp().sum().item(), 1.0, rel_tol=1e-6)
    peak = np.unravel_index(template.argmax().item(), template.shape)
    assert peak in {(31, 23), (31, 24), (32, 23), (32, 24)}
    torch.testing.assert_close(template, template.flip(0))
    torch.testing.assert_close(template, template.flip(1))
    assert torch.isfinite(template).all() and template.max() - template.min() < 10


@pytest.mark.parametrize("size", [(768, 1024), (31, 17), (5, 300)])
def test_resized_to_any_size_and_renormalised(size):
    bias = CenterBiasTemplate((64, 64))(size).double()
    assert bias.shape == size
    assert math.isclose(bias.exp().sum().item(), 1.0, rel_tol=1e-6)


def test_set_template_resizes_and_normalises():
    module = CenterBiasTemplate((32, 32))
    ramp = torch.linspace(0, 3, 16).repeat(8, 1)  # (8, 16): denser to the right
    module.set_template(ramp)
    assert module.log_density.shape == (32, 32)
    assert math.isclose(module.log_density.double().exp().sum().item(), 1.0, rel_tol=1e-6)
    assert module.log_density[:, -1].mean() > module.log_density[:, 0].mean() + 2
    with pytest.raises(ValueError, match="NaN or infinite"):
        module.set_template(torch.full((8, 8), float("-inf")))
    with pytest.raises(ValueError, match="2-d"):
        module.set_template(torch.zeros(8))


def test_centre_bias_per_call_overrides_the_template():
    model = make_tiny_model()
    images = random_images(1, 64, 80)
    left = torch.zeros(64, 80)
    left[:, 40:] = -20.0
    with torch.no_grad():
        default = model(images)
        leftward = model(images, centerbias=left)
    assert leftward[0, :, :40].exp().sum() > 0.99
    assert not torch.allclose(default, leftward)
    with pytest.raises(ValueError, match="centerbias must be"):
        model(images, centerbias=torch.zeros(10, 10))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(images, centerbias=torch.full((64, 80), float("nan")))


def test_antialias_mode_is_normalised_and_differs_from_nearest():
    nearest = make_tiny_model(num_members=2)
    smooth = make_tiny_model(num_members=2, resize_mode="antialias")
    images = random_images(1, 70, 90)
    with torch.no_grad():
        a, b = nearest(images), smooth(images)
    assert math.isclose(b.double().exp().sum().item(), 1.0, rel_tol=1e-5)
    assert not torch.allclose(a, b)
