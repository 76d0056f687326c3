"""DeepGazeConfig: JSON round trip, validation, versioning."""

from __future__ import annotations

import json

import pytest

from deepgaze_hub import BackboneConfig, ConfigError, DeepGazeConfig
from deepgaze_hub.model.config import CONFIG_FORMAT_VERSION, VGG19_DEEPGAZE2_LAYERS


def test_defaults_are_the_reference():
    cfg = DeepGazeConfig()
    assert cfg.backbone.name == "vgg19" and cfg.backbone.weights == "IMAGENET1K_V1"
    assert cfg.backbone.layers == ["features.28", "features.29", "features.31", "features.32", "features.35"]
    assert (cfg.downsample, cfg.readout_factor, cfg.saliency_map_factor) == (2.0, 16, 2)
    assert cfg.readout_channels == [16, 32, 2, 1]
    assert (cfg.initial_sigma, cfg.blur_truncate, cfg.initial_centerbias_weight) == (8.0, 3.0, 1.0)
    assert cfg.resize_mode == "nearest"


def test_json_round_trip(tmp_path):
    cfg = DeepGazeConfig(
        backbone=BackboneConfig.preset("densenet201", weights=None),
        num_members=10,
        nonlinearity="relu",
        resize_mode="antialias",
        centerbias_shape=[64, 48],
    )
    cfg.to_json(tmp_path / "config.json")
    again = DeepGazeConfig.from_json(tmp_path / "config.json")
    assert again == cfg
    assert isinstance(again.backbone, BackboneConfig)


def test_unknown_fields_are_refused(tmp_path):
    data = DeepGazeConfig().to_dict()
    data["readout_dropout"] = 0.5
    data["backbone"]["stride"] = 2
    with pytest.raises(ConfigError, match="readout_dropout"):
        DeepGazeConfig.from_dict(data)
    del data["readout_dropout"]
    with pytest.raises(ConfigError, match="stride"):
        DeepGazeConfig.from_dict(data)


def test_newer_format_is_refused_with_upgrade_hint(tmp_path):
    data = DeepGazeConfig().to_dict()
    data["format_version"] = CONFIG_FORMAT_VERSION + 1
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="upgrade"):
        DeepGazeConfig.from_json(tmp_path / "config.json")


def test_unreadable_json_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        DeepGazeConfig.from_json(path)


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(num_members=0), "num_members"),
        (dict(readout_channels=[16, 2]), "readout_channels"),
        (dict(nonlinearity="tanh"), "nonlinearity"),
        (dict(resize_mode="bicubic"), "resize_mode"),
        (dict(initial_sigma=-1.0), "initial_sigma"),
        (dict(centerbias_shape=[1]), "centerbias_shape"),
    ],
)
def test_invalid_values_name_the_field(change, field):
    with pytest.raises(ConfigError, match=field):
        DeepGazeConfig(**change)


def test_backbone_channels_must_match_layers():
    with pytest.raises(ConfigError, match="channels"):
        DeepGazeConfig(backbone=BackboneConfig(layers=list(VGG19_DEEPGAZE2_LAYERS), channels=[512]))


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match="vgg19"):
        BackboneConfig.preset("alexnet_custom")


def test_every_field_is_typed_bounded_and_documented():
    from dataclasses import fields

    from deepgaze_hub.hub.registry import HubPin, RegistryEntry
    from deepgaze_hub.io.typed import field_bounds, field_help

    for cls in (DeepGazeConfig, BackboneConfig, RegistryEntry, HubPin):
        for field in fields(cls):
            if field.init:
                assert field_bounds(field) is not None and field_help(field), f"{cls.__name__}.{field.name}"
