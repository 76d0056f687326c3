"""Shared fixtures: small backbones and models built offline from random weights."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.hub import official

TINY_LAYERS = ["conv3", "relu3"]


def tiny_network(seed: int = 0) -> nn.Module:
    """A three-conv network standing in for a user's own backbone (stride 4)."""
    generator = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1),
            relu1=nn.ReLU(inplace=True),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            relu2=nn.ReLU(inplace=True),
            pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(16, 12, 3, padding=1),
            relu3=nn.ReLU(inplace=True),
        )
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return net


def tiny_config(**overrides) -> DeepGazeConfig:
    backbone = BackboneConfig(name="custom", weights=None, layers=list(TINY_LAYERS), channels=None)
    return DeepGazeConfig(backbone=backbone, **overrides)


def make_tiny_model(num_members: int = 1, seed: int = 0, **overrides) -> DeepGaze:
    torch.manual_seed(seed)
    model = DeepGaze(tiny_config(num_members=num_members, **overrides), backbone=tiny_network(seed))
    with torch.no_grad():  # members that differ in every parameter
        model.finalizer.sigma.copy_(torch.linspace(3.0, 9.5, num_members))
        model.finalizer.centerbias_weight.copy_(torch.linspace(0.6, 1.3, num_members))
    return model.eval()


@pytest.fixture
def tiny_model() -> DeepGaze:
    return make_tiny_model()


@pytest.fixture(scope="session")
def vgg_model() -> DeepGaze:
    """The DeepGaze II architecture with a random-init VGG-19 (no ImageNet download), K=3."""
    torch.manual_seed(1)
    config = DeepGazeConfig(backbone=BackboneConfig(weights=None), num_members=3)
    model = DeepGaze(config).eval()
    with torch.no_grad():
        model.finalizer.sigma.copy_(torch.tensor([8.0, 5.3, 11.7]))
        model.finalizer.centerbias_weight.copy_(torch.tensor([1.0, 0.7, 1.4]))
    return model


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a test module: many tiny ops on a shared, oversubscribed machine run
    ~50x faster without threads spinning against each other."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def deepgaze1_state() -> dict[str, torch.Tensor]:
    """Random weights in the layout of the authors' deepgaze1.pth (61 M values, ~245 MB)."""
    return official.random_published_state_dict("deepgaze1", seed=0)


@pytest.fixture(scope="session")
def deepgaze2e_state() -> dict[str, torch.Tensor]:
    """Random weights in the layout of the authors' deepgaze2e.pth (105 M values, ~420 MB)."""
    return official.random_published_state_dict("deepgaze2e", seed=0)


def random_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=generator) * 255


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """The embedded synthetic dataset, generated once per test session into a temp cache."""
    from deepgaze_hub.data import default_dataset

    return default_dataset(cache_dir=tmp_path_factory.mktemp("deepgaze-cache"))
