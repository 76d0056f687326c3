"""The forward pass against an independent literal implementation of the reference (SPEC §1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from deepgaze_hub.model import DeepGaze
from deepgaze_hub.model.finalizer import blurred_resize_matrix
from reference_impl import gaussian_blur_1d, reference_forward

from conftest import make_tiny_model, random_images

VGG_TAPS = [28, 29, 31, 32, 35]


@pytest.mark.parametrize("size", [(192, 256), (97, 131)])
def test_vgg_ensemble_matches_reference(vgg_model, size):
    images = random_images(2, *size, seed=3)
    centerbias = torch.randn(2, *size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = vgg_model(images, centerbias=centerbias)
        reference = reference_forward(vgg_model, images, centerbias, VGG_TAPS)
    assert ours.shape == (2, *size)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=2e-5)


def test_densities_sum_to_one(vgg_model):
    images = random_images(3, 160, 224, seed=5)
    with torch.no_grad():
        out = vgg_model(images).double()
        members = vgg_model.member_log_densities(images).double()
    np.testing.assert_allclose(out.exp().sum(dim=(1, 2)).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(members.exp().sum(dim=(2, 3)).numpy(), 1.0, atol=1e-5)


def test_inplace_relu_does_not_overwrite_tapped_conv(vgg_model):
    conv5_1, relu5_1, *_ = vgg_model.backbone(random_images(1, 96, 128))
    assert (conv5_1 < 0).any(), "a conv output has negative values"
    assert not torch.equal(conv5_1, relu5_1)
    torch.testing.assert_close(relu5_1, conv5_1.clamp_min(0))


@pytest.mark.parametrize("sigma", [8.0, 8.1, 3.7, 0.4])
def test_blur_matches_scipy(sigma):
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(40, 7))
    # scipy with the reference's radius rule (ceil, not scipy's own round-half-up)
    radius = math.ceil(3 * sigma)
    expected = gaussian_filter1d(signal, sigma, axis=0, mode="nearest", radius=radius)
    matrix = blurred_resize_matrix(40, 40, torch.tensor([sigma], dtype=torch.float64), 3.0, "nearest")[0]
    np.testing.assert_allclose((matrix @ torch.from_numpy(signal)).numpy(), expected, rtol=1e-10, atol=1e-12)
    conv = gaussian_blur_1d(torch.from_numpy(signal), 0, sigma)
    np.testing.assert_allclose(conv.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_ensemble_is_mixture_of_members_computed_separately():
    model = make_tiny_model(num_members=4)
    images = random_images(2, 70, 90, seed=7)
    with torch.no_grad():
        mixture = model(images)
        separate = torch.stack([model(images, members=k) for k in range(4)])
        sub = model(images, members=[1, 3])
    torch.testing.assert_close(mixture, separate.logsumexp(0) - math.log(4), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sub, separate[[1, 3]].logsumexp(0) - math.log(2), rtol=1e-5, atol=1e-5)
    # a member alone is a model in its own right
    torch.testing.assert_close(separate[2], model.member_log_densities(images)[:, 2], rtol=1e-5, atol=1e-5)


def test_backbone_runs_once_for_all_members():
    model = make_tiny_model(num_members=10)
    calls = []
    model.backbone.network.conv1.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        model(random_images(2, 64, 64))
    assert len(calls) == 1


def test_members_must_exist():
    model = make_tiny_model(num_members=2)
    with pytest.raises(ValueError, match="members must be in"):
        model(random_images(1, 64, 64), members=2)


@pytest.mark.parametrize("mode", ["nearest", "antialias"])
def test_log_density_at_fixations_equals_indexing_the_full_maps(mode):
    model = make_tiny_model(num_members=3, resize_mode=mode)
    images = random_images(2, 75, 101, seed=8)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(50, generator=generator) * 101
    y = torch.rand(50, generator=generator) * 75
    batch = torch.randint(0, 2, (50,), generator=generator)
    with torch.no_grad():
        full = model.member_log_densities(images)
        features = model.extract_features(images)
        at = model.log_density_at(features, (75, 101), batch, x, y)
    torch.testing.assert_close(at, full[batch, :, y.long(), x.long()], rtol=1e-6, atol=1e-6)


def test_stacking_and_selecting_members_round_trip():
    model = make_tiny_model(num_members=3)
    images = random_images(1, 64, 72, seed=2)
    parts = [model.select_members([k]) for k in range(3)]
    assert all(part.backbone is model.backbone for part in parts)
    rebuilt = DeepGaze.stack(parts)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images), model(images))
        torch.testing.assert_close(parts[1](images), model(images, members=1))
        torch.testing.assert_close(model.select_members([2, 0])(images), model(images, members=[0, 2]))
