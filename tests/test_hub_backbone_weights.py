"""Backbone weights from a Hub repo as safetensors (timm's layout), pinned by commit and sha256."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torchvision
from hubserver import set_offline
from safetensors.torch import save

from deepgaze_hub import BackboneConfig, ConfigError, DeepGaze, DeepGazeConfig, WeightsError
from deepgaze_hub.model.backbone_weights import HubWeights, check_layout, hub_repo_id, to_torchvision_layout
from deepgaze_hub.model.card import build_model_card

pytest_plugins = ["hubserver"]  # the local_hub fixture
REPO = "lab/vgg19-stand-in"
TIMM_CLASSIFIER = {"classifier.0": "pre_logits.fc1", "classifier.3": "pre_logits.fc2", "classifier.6": "head.fc"}


def timm_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What timm's vgg19.tv_in1k holds, from a torchvision VGG state dict: features.* unchanged,
    the classifier as pre_logits.fc1 (a 7x7 convolution), pre_logits.fc2 (1x1) and head.fc."""
    out = {}
    for key, value in state.items():
        module, _, parameter = key.rpartition(".")
        if module in TIMM_CLASSIFIER and parameter == "weight" and module != "classifier.6":
            value = value.reshape(value.shape[0], -1 if module == "classifier.3" else 512, *((7, 7) if module == "classifier.0" else (1, 1)))
        out[f"{TIMM_CLASSIFIER.get(module, module)}.{parameter}"] = value
    return out


@pytest.fixture(scope="module")
def features() -> dict[str, torch.Tensor]:
    """The convolutions of a random torchvision VGG-19 (what DeepGaze's backbone needs), in float16
    to keep the file at 40 MB (loading upcasts them)."""
    torch.manual_seed(0)
    network = torchvision.models.vgg19(weights=None)
    return {key: value.half() for key, value in network.state_dict().items() if key.startswith("features.")}


def publish(hub, files: dict[str, torch.Tensor]) -> tuple[str, str]:
    data = save(files)
    return hub.add_commit(REPO, {"model.safetensors": data}), hashlib.sha256(data).hexdigest()


def config_with(weights: str) -> DeepGazeConfig:
    return DeepGazeConfig(backbone=BackboneConfig(weights=weights))


def test_the_full_timm_vgg19_layout_maps_to_torchvision_key_for_key():
    with torch.device("meta"):
        reference = torchvision.models.vgg19(weights=None).state_dict()
    timm = timm_layout(reference)
    assert {"pre_logits.fc1.weight", "pre_logits.fc2.weight", "head.fc.weight"} <= set(timm)
    assert tuple(timm["pre_logits.fc1.weight"].shape) == (4096, 512, 7, 7)
    mapped = to_torchvision_layout(timm)
    assert {key: tuple(v.shape) for key, v in mapped.items()} == {key: tuple(v.shape) for key, v in reference.items()}
    check_layout(mapped, "vgg19", "test")  # no error
    values = torch.arange(2 * 512 * 7 * 7.0).reshape(2, 512, 7, 7)
    assert torch.equal(to_torchvision_layout({"pre_logits.fc1.weight": values})["classifier.0.weight"], values.reshape(2, -1))


def test_a_model_loads_its_backbone_from_the_hub_without_pickle(local_hub, features, tmp_path, monkeypatch):
    commit, sha256 = publish(local_hub, timm_layout(features))
    spec = f"hf-hub:{REPO}@{commit}?sha256={sha256}"
    model = DeepGaze(config_with(spec))
    network = model.backbone.network.state_dict()
    for key, value in features.items():
        assert torch.equal(network[key], value.float()), key
    # the same tensors from a local file in torchvision's layout give the same model
    path = tmp_path / "vgg19.safetensors"
    path.write_bytes(save(features))
    local = DeepGaze(config_with(str(path)))
    images = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0)) * 255
    assert torch.equal(model.backbone(images)[0], local.backbone(images)[0])
    # saved and reloaded offline: the weights come from the cache, no request is made
    model.save_pretrained(tmp_path / "model")
    set_offline(monkeypatch)
    before = len(local_hub.requests)
    again = DeepGaze.from_pretrained(tmp_path / "model")
    assert len(local_hub.requests) == before and again.config.backbone.weights == spec
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"base_model: {REPO}" in card and "no pickle file is involved" in card


def test_a_wrong_sha256_is_refused(local_hub, features):
    commit, sha256 = publish(local_hub, {"features.0.weight": features["features.0.weight"]})
    wrong = ("0" if sha256[0] != "0" else "1") + sha256[1:]
    with pytest.raises(WeightsError, match=f"has sha256 {sha256}, but {wrong} is pinned"):
        DeepGaze(config_with(f"hf-hub:{REPO}@{commit}?sha256={wrong}"))


@pytest.mark.parametrize(
    "files, message",
    [
        ({"conv1.weight": torch.zeros(64, 3, 7, 7)}, r"does not hold vgg19 weights .*missing \['classifier.0.bias'.*unexpected \['conv1.weight'\]"),
        ({"features.0.weight": torch.zeros(32, 3, 3, 3)}, r"wrong shapes \['features.0.weight: file \(32, 3, 3, 3\), vgg19 \(64, 3, 3, 3\)'\]"),
        ({"features.0.weight": torch.zeros(64, 3, 3, 3)}, r"do not fit vgg19: missing \['features.0.bias'"),
    ],
    ids=["other-network", "wrong-shape", "incomplete"],
)
def test_a_wrong_layout_is_refused_with_the_keys(local_hub, files, message):
    commit, sha256 = publish(local_hub, files)
    with pytest.raises(WeightsError, match=message):
        DeepGaze(config_with(f"hf-hub:{REPO}@{commit}?sha256={sha256}"))


@pytest.mark.parametrize(
    "spec",
    [
        "hf-hub:timm/vgg19.tv_in1k",
        "hf-hub:timm/vgg19.tv_in1k@main?sha256=" + "a" * 64,
        "hf-hub:timm/vgg19.tv_in1k@" + "a" * 40,
        "hf-hub:vgg19@" + "a" * 40 + "?sha256=" + "a" * 64,
    ],
)
def test_hub_weights_must_be_pinned_by_commit_and_sha256(spec):
    with pytest.raises(ConfigError, match="must be pinned to a commit and the file's sha256, as hf-hub:timm/vgg19.tv_in1k@<40-hex commit>"):
        HubWeights.parse(spec)


def test_a_model_with_unpinned_hub_weights_is_refused():
    with pytest.raises(ConfigError, match="must be pinned to a commit and the file's sha256"):
        DeepGaze(config_with("hf-hub:timm/vgg19.tv_in1k"))


def test_a_missing_repo_or_commit_is_one_clear_error(local_hub):
    spec = f"hf-hub:lab/nothing@{'a' * 40}?sha256={'b' * 64}"
    with pytest.raises(WeightsError, match="backbone weights lab/nothing@a{40}: no such model repo"):
        DeepGaze(config_with(spec))


def test_the_spec_round_trips_and_names_its_repo():
    spec = f"hf-hub:timm/vgg19.tv_in1k@{'c' * 40}?sha256={'d' * 64}"
    assert str(HubWeights.parse(spec)) == spec and hub_repo_id(spec) == "timm/vgg19.tv_in1k"
    assert hub_repo_id("IMAGENET1K_V1") is None
    card = str(build_model_card(config_with(spec)))
    assert "base_model: timm/vgg19.tv_in1k" in card and "https://huggingface.co/timm/vgg19.tv_in1k" in card
