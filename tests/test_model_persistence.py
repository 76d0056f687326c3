"""save_pretrained / from_pretrained on local directories: identical outputs, strict, no pickles."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from deepgaze_hub import BackboneConfig, ConfigError, DeepGaze, DeepGazeConfig, WeightsError
from deepgaze_hub.io.atomic import atomic_save_npy, current_umask

from conftest import random_images

SQUEEZE = BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None)


@pytest.fixture(scope="module")
def trained_looking(tmp_path_factory):
    """A 3-member model whose every parameter and centre bias differ from their initial values."""
    torch.manual_seed(2)
    model = DeepGaze(DeepGazeConfig(backbone=SQUEEZE, num_members=3, centerbias_shape=[32, 40]))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.finalizer.sigma.copy_(torch.tensor([4.0, 7.5, 10.0]))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 40), indexing="ij")
    model.set_centerbias(-(xx - 0.3) ** 2 / 0.1 - yy**2 / 0.2)
    directory = tmp_path_factory.mktemp("model")
    model.eval().save_pretrained(directory)
    return model, directory


def test_round_trip_gives_identical_outputs(trained_looking):
    model, directory = trained_looking
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    again = DeepGaze.from_pretrained(directory)
    assert again.config == model.config
    images = random_images(2, 96, 128, seed=9)
    with torch.no_grad():
        assert torch.equal(model(images), again(images))
        assert torch.equal(model(images, members=1), again(images, members=1))


def test_weights_file_holds_only_the_readout_side(trained_looking):
    _, directory = trained_looking
    keys = set(load_file(str(directory / "model.safetensors")))
    assert keys == {
        *(f"readout.layers.{i}.weight" for i in range(4)),
        *(f"readout.layers.{i}.bias" for i in range(3)),  # the last layer has no bias
        "finalizer.sigma",
        "finalizer.centerbias_weight",
        "centerbias.log_density",
    }


def _tamper(directory, tmp_path, change):
    target = tmp_path / "tampered"
    target.mkdir()
    (target / "config.json").write_text((directory / "config.json").read_text())
    state = load_file(str(directory / "model.safetensors"))
    change(state)
    save_file(state, str(target / "model.safetensors"))
    return target


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("finalizer.sigma"), "missing tensors \\['finalizer.sigma'\\]"),
        (lambda s: s.update(extra=torch.zeros(3)), "unexpected tensors \\['extra'\\]"),
        (lambda s: s.update({"finalizer.sigma": torch.zeros(4)}), "wrong shapes .*finalizer.sigma"),
    ],
)
def test_tampered_weights_are_refused_with_the_keys(trained_looking, tmp_path, change, message):
    _, directory = trained_looking
    with pytest.raises(WeightsError, match=message):
        DeepGaze.from_pretrained(_tamper(directory, tmp_path, change))


def test_corrupt_safetensors_file(trained_looking, tmp_path):
    _, directory = trained_looking
    target = _tamper(directory, tmp_path, lambda s: None)
    (target / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        DeepGaze.from_pretrained(target)


def test_pickle_only_directory_is_refused_without_unpickling(trained_looking, tmp_path):
    _, directory = trained_looking
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    # a pickle that would run code if it were ever loaded
    (tmp_path / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR.")
    with pytest.raises(WeightsError, match="only pickle files .*pytorch_model.bin"):
        DeepGaze.from_pretrained(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_config_from_a_newer_release_is_refused(trained_looking, tmp_path):
    _, directory = trained_looking
    target = _tamper(directory, tmp_path, lambda s: None)
    data = json.loads((target / "config.json").read_text())
    data["format_version"] = 99
    (target / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="upgrade"):
        DeepGaze.from_pretrained(target)


def test_not_a_directory(tmp_path):
    with pytest.raises(WeightsError, match="not a model directory"):
        DeepGaze.from_pretrained(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002, 0o077])
def test_every_saved_file_follows_the_umask(trained_looking, tmp_path, umask):
    """safetensors creates its file 0600; a model directory must be as readable as the umask allows."""
    model, _ = trained_looking
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        model.save_pretrained(tmp_path / "model")
        atomic_save_npy(tmp_path / "x.npy", np.zeros(3))
    finally:
        os.umask(old)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [*(tmp_path / "model").iterdir(), tmp_path / "x.npy"]}
    assert modes == {name: 0o666 & ~umask for name in ("README.md", "config.json", "model.safetensors", "x.npy")}
    assert not list(tmp_path.rglob("*.partial"))


@pytest.mark.parametrize(
    "change, field, allowed",
    [
        ({"num_members": True}, "num_members", "must be an integer, got True"),
        ({"num_members": 4.0}, "num_members", "must be an integer, got 4.0"),
        ({"num_members": "4"}, "num_members", "must be an integer, got '4'"),
        ({"num_members": 100000}, "num_members", "must be <= 1000"),
        ({"centerbias_shape": [100000, 100000]}, "centerbias_shape", "must have entries <= 4096"),
        ({"centerbias_shape": [32]}, "centerbias_shape", "must have at least 2 entries"),
        ({"readout_channels": [16, 100000, 1]}, "readout_channels", "must have entries <= 65536"),
        ({"readout_channels": "16,32,2,1"}, "readout_channels", "must be a list of integers"),
        ({"downsample": "2"}, "downsample", "must be a finite number"),
        ({"learn_sigma": "yes"}, "learn_sigma", "must be true or false"),
        ({"nonlinearity": "tanh"}, "nonlinearity", r"must be one of \['relu', 'softplus'\]"),
        ({"backbone": {"name": "squeezenet1_1", "layers": "features.9"}}, "backbone.layers", "must be a list of strings"),
        ({"backbone": {"name": "squeezenet1_1", "init_seed": -1}}, "backbone.init_seed", "must be >= 0"),
        ({"backbone": "squeezenet1_1"}, "backbone", "must be a mapping"),
        ({"format_version": "1"}, "format_version", "must be an integer"),
    ],
)
def test_a_bad_config_json_names_the_file_and_field_before_allocating(trained_looking, tmp_path, change, field, allowed):
    """Any config.json (e.g. from any Hub repo): a wrong type or an absurd size is a ConfigError, fast."""
    import re
    import time

    _, directory = trained_looking
    target = _tamper(directory, tmp_path, lambda s: None)
    data = json.loads((target / "config.json").read_text())
    data.update(change)
    (target / "config.json").write_text(json.dumps(data))
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"{re.escape(str(target / 'config.json'))}: {re.escape(field)} {allowed}"):
        DeepGaze.from_pretrained(target)
    assert time.monotonic() - start < 2  # refused before building anything (100000**2 floats would be 40 GB)


def test_the_same_bounds_hold_for_configs_built_in_python():
    with pytest.raises(ConfigError, match=r"DeepGazeConfig: centerbias_shape must have entries <= 4096"):
        DeepGazeConfig(backbone=SQUEEZE, centerbias_shape=[100000, 100000])
    with pytest.raises(ConfigError, match="num_members must be an integer, got True"):
        DeepGazeConfig(backbone=SQUEEZE, num_members=True)
    with pytest.raises(ConfigError, match="input_scale must be > 0"):
        BackboneConfig(input_scale=0)
