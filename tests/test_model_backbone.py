"""The frozen feature extractor: torchvision by name, user modules, weights, freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from deepgaze_hub import BackboneConfig, ConfigError, DeepGaze, DeepGazeConfig, DeepGazeError, FeatureExtractor, WeightsError
from deepgaze_hub.model.backbone import OWN_BACKBONES, build_backbone

from conftest import make_tiny_model, random_images, tiny_config, tiny_network

SQUEEZE = dict(name="squeezenet1_1", layers=["features.9", "features.12"], channels=None)


def test_backbone_is_frozen_and_outside_the_state_dict():
    model = make_tiny_model(num_members=2)
    model.train()
    assert model.training and not model.backbone.training and not model.backbone.network.training
    assert all(not p.requires_grad for p in model.backbone.network.parameters())
    own = {id(p) for p in model.parameters()}
    assert not any(id(p) in own for p in model.backbone.network.parameters())
    assert not any(key.startswith("backbone") for key in model.state_dict())
    out = model(random_images(1, 64, 64))
    out[0, 10, 10].backward()
    assert model.readout.layers[0].weight.grad is not None
    assert model.finalizer.sigma.grad is not None and model.finalizer.centerbias_weight.grad is not None
    assert all(p.grad is None for p in model.backbone.network.parameters())


def test_to_moves_the_backbone_too():
    model = make_tiny_model().to(torch.float64)
    assert model.backbone.network.conv1.weight.dtype == torch.float64
    assert model.readout.layers[0].weight.dtype == torch.float64


def test_custom_module_with_named_taps_and_inferred_channels():
    model = DeepGaze(tiny_config(), backbone=tiny_network())
    assert model.config.backbone.channels == [12, 12]
    assert model.readout.layers[0].weight.shape[-1] == 24
    with torch.no_grad():
        assert model(random_images(2, 80, 96)).shape == (2, 80, 96)


def test_stops_after_the_last_tap():
    net = tiny_network()
    ran = []
    net.relu3.register_forward_hook(lambda *a: ran.append("relu3"))
    extractor = FeatureExtractor(net, ["conv2"], mean=[0, 0, 0], std=[1, 1, 1])
    (features,) = extractor(random_images(1, 32, 32))
    assert features.shape[1] == 16 and ran == []


def test_unknown_layer_names_are_listed():
    with pytest.raises(ConfigError, match="no submodules named \\['conv9'\\]"):
        FeatureExtractor(tiny_network(), ["conv9"], mean=[0, 0, 0], std=[1, 1, 1])


def test_custom_backbone_needs_the_module():
    with pytest.raises(ConfigError, match="backbone=module"):
        DeepGaze(tiny_config())


def test_torchvision_backbone_is_pruned_to_the_taps():
    extractor = build_backbone(BackboneConfig(weights=None, **SQUEEZE))
    assert isinstance(extractor.network.classifier, nn.Identity)
    assert not isinstance(extractor.network.features[12], nn.Identity)


def test_random_init_is_reproducible_from_the_seed():
    a = build_backbone(BackboneConfig(weights=None, init_seed=3, **SQUEEZE))
    b = build_backbone(BackboneConfig(weights=None, init_seed=3, **SQUEEZE))
    c = build_backbone(BackboneConfig(weights=None, init_seed=4, **SQUEEZE))
    wa, wb, wc = (x.network.features[0].weight for x in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


@pytest.fixture
def fake_torchvision_cache(tmp_path, monkeypatch):
    """A squeezenet1_1 ImageNet file in torch's hub cache, as torchvision would have downloaded it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = torchvision.models.get_model_weights("squeezenet1_1").IMAGENET1K_V1.url
    torch.manual_seed(11)
    state = torchvision.models.squeezenet1_1().state_dict()
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


def test_imagenet_weights_load_through_torchvisions_api(fake_torchvision_cache):
    extractor = build_backbone(BackboneConfig(weights="IMAGENET1K_V1", **SQUEEZE))
    loaded = extractor.network.features[12].expand3x3.weight
    assert torch.equal(loaded, fake_torchvision_cache["features.12.expand3x3.weight"])
    default = build_backbone(BackboneConfig(weights="DEFAULT", **SQUEEZE))
    assert torch.equal(default.network.features[0].weight, fake_torchvision_cache["features.0.weight"])


def test_unknown_weights_name_lists_the_available(fake_torchvision_cache):
    with pytest.raises(ConfigError, match="IMAGENET1K_V1"):
        build_backbone(BackboneConfig(weights="IMAGENET22K", **SQUEEZE))


def test_missing_weights_say_where_the_file_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsError, match="checkpoints/squeezenet1_1-b8a52dc0.pth"):
        build_backbone(BackboneConfig(weights="IMAGENET1K_V1", **SQUEEZE))


def test_weights_from_a_safetensors_file(tmp_path):
    torch.manual_seed(5)
    state = torchvision.models.squeezenet1_1().state_dict()
    save_file(state, str(tmp_path / "squeeze.safetensors"))
    extractor = build_backbone(BackboneConfig(weights=str(tmp_path / "squeeze.safetensors"), **SQUEEZE))
    assert torch.equal(extractor.network.features[3].squeeze.weight, state["features.3.squeeze.weight"])
    bad = {k: v for k, v in state.items() if not k.startswith("features.12")}
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match="missing"):
        build_backbone(BackboneConfig(weights=str(tmp_path / "bad.safetensors"), **SQUEEZE))


def test_loaded_weights_fill_every_tensor_and_skip_the_random_init(tmp_path, monkeypatch):
    """Weights loaded at build time: the network is built on the meta device, so no random
    initialisation runs, and every tensor of the pruned network comes from the file."""
    torch.manual_seed(6)
    state = torchvision.models.resnet18().state_dict()
    save_file(state, str(tmp_path / "resnet.safetensors"))
    config = BackboneConfig(name="resnet18", weights=str(tmp_path / "resnet.safetensors"), layers=["layer2.1.conv2"], channels=None)
    calls = []
    original = nn.init.kaiming_normal_
    def counting(tensor, *args, **kwargs):
        calls.append(tensor.device.type)
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(nn.init, "kaiming_normal_", counting)
    extractor = build_backbone(config)
    assert calls and set(calls) == {"meta"}  # torchvision's initialisation ran on the meta device only
    loaded = extractor.network.state_dict()
    assert loaded and all(torch.equal(value, state[key]) for key, value in loaded.items())
    monkeypatch.undo()
    seeded = build_backbone(BackboneConfig(name="resnet18", weights=None, layers=["layer2.1.conv2"], channels=None))
    seeded.network.load_state_dict({k: state[k] for k in seeded.network.state_dict()})
    images = random_images(1, 64, 64)
    torch.testing.assert_close(extractor(images)[0], seeded(images)[0], atol=0, rtol=0)


def test_a_network_with_unsaved_buffers_is_initialised_before_loading(tmp_path, monkeypatch):
    class WithScale(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.register_buffer("scale", torch.full((1,), 2.0), persistent=False)

        def forward(self, x):
            return self.conv(x) * self.scale

    state = WithScale().state_dict()
    save_file(state, str(tmp_path / "scale.safetensors"))
    monkeypatch.setitem(OWN_BACKBONES, "scaled", WithScale)
    extractor = build_backbone(BackboneConfig(name="scaled", weights=str(tmp_path / "scale.safetensors"), layers=["conv"], channels=None))
    assert float(extractor.network.scale) == 2.0
    assert torch.equal(extractor.network.conv.weight, state["conv.weight"])


def test_too_small_image_says_so():
    model = DeepGaze(DeepGazeConfig(backbone=BackboneConfig(weights=None, **SQUEEZE)))
    with pytest.raises(DeepGazeError, match="too small|not supported"):
        model(random_images(1, 20, 20))


def test_layers_of_the_presets_exist_with_the_stated_channels():
    for name in ("densenet201", "resnext50_32x4d"):
        config = BackboneConfig.preset(name, weights=None)
        stated = list(config.channels)
        config.channels = None
        extractor = build_backbone(config)
        assert extractor.infer_channels() == stated, name
