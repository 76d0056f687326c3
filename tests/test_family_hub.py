"""The authors' release files as models: `deepgaze-hub convert official`, registry entries with a
``release:`` section (download from a local HTTP server, convert once, then offline), and the
refusals (non-pickles, pickles that need a full unpickle, wrong layouts, wrong pinned sha256).

Most tests run the plumbing on a SMALL stand-in layout and a stand-in converter (monkeypatched into
`deepgaze_hub.hub.official`): what is tested here is reading, checking, caching and writing, not
the conversion itself (tests/test_model_*.py and the fidelity tests do that). The slow test at the
end converts a random state dict in the real DeepGaze I layout with the real converter.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle

import numpy as np
import pytest
import torch

import deepgaze_hub
from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.cli import main
from deepgaze_hub.errors import ConfigError, WeightsError
from deepgaze_hub.hub import official, release
from deepgaze_hub.hub.registry import Registry, parse_entry
from deepgaze_hub.io import download as dl
from test_io_download import server  # noqa: F401  (the fixture: a local release server)

SMALL_LAYOUT = {
    "features.features.1.features.0.weight": (4, 3, 3, 3),
    "readout_network.conv0.weight": (1, 4, 1, 1),
    "finalizer.gauss.sigma": (),
    "finalizer.center_bias_weight": (1,),
}


def _stand_in_converter(kind, state_dict, *, centerbias=None, where):
    """A converter standing in for `official.convert_official`: a small model whose blur sigma and
    centre-bias weight come from the state dict, whose centre bias comes from ``centerbias``."""
    assert kind == official.DEEPGAZE1 and isinstance(where, str)
    backbone = BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.2"], channels=None)
    config = DeepGazeConfig(backbone=backbone, num_members=1, readout_channels=[4, 1], centerbias_shape=[16, 16])
    model = DeepGaze(config)
    with torch.no_grad():
        model.finalizer.sigma.copy_(state_dict["finalizer.gauss.sigma"].reshape(1))
        model.finalizer.centerbias_weight.copy_(state_dict["finalizer.center_bias_weight"])
    if centerbias is not None:
        small = torch.from_numpy(centerbias[::64, ::64].copy()).float()
        model.set_centerbias(small - torch.logsumexp(small.flatten(), 0))
    return model.eval()


@pytest.fixture
def stand_in(monkeypatch, one_thread):
    """The small layout and the stand-in converter, for every code path that reads them."""
    monkeypatch.setattr(official, "published_layout", lambda kind: dict(SMALL_LAYOUT))
    monkeypatch.setattr(official, "convert_official", _stand_in_converter, raising=False)


@pytest.fixture(autouse=True)
def cache(monkeypatch, tmp_path):
    for name in dl.OFFLINE_ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEEPGAZE_HUB_CACHE", str(tmp_path / "cache"))
    release._announced.clear()
    return tmp_path / "cache"


def _pth_bytes(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _centerbias() -> np.ndarray:
    y, x = np.mgrid[0:1024, 0:1024]
    log = -((x - 512.0) ** 2 + (y - 400.0) ** 2) / (2 * 200.0**2)
    return log - np.log(np.exp(log).sum())


def _npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _image(path):
    rng = np.random.default_rng(0)
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------------------------------
# deepgaze-hub convert official


def test_convert_cli_writes_a_model_directory_that_loads_and_predicts(stand_in, tmp_path, capsys):
    state = official.random_published_state_dict("deepgaze1", seed=3)
    source = tmp_path / "deepgaze1.pth"
    source.write_bytes(_pth_bytes(state))
    npy = tmp_path / "centerbias_mit1003.npy"
    npy.write_bytes(_npy_bytes(_centerbias()))
    out = tmp_path / "dg1"
    assert main(["convert", "official", "deepgaze1", str(source), "--out", str(out), "--centerbias", str(npy)]) == 0
    captured = capsys.readouterr()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert captured.out.strip() == digest and digest in captured.err
    assert {"config.json", "model.safetensors", "README.md", "source.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dg1")]  # no staging left behind
    provenance = json.loads((out / "source.json").read_text())
    assert provenance["sha256"] == digest and provenance["converter"] == "deepgaze1"
    assert provenance["centerbias_sha256"] == hashlib.sha256(npy.read_bytes()).hexdigest()
    card = (out / "README.md").read_text()
    for needle in (digest, "Kümmerer", "1411.1045", "no licence", "do not re-host", "license: other"):
        assert needle in card, needle

    model = deepgaze_hub.load(out)
    assert float(model.finalizer.sigma.detach()) == pytest.approx(float(state["finalizer.gauss.sigma"]))
    log_density = model.predict(_image(tmp_path / "photo.png"))
    assert log_density.shape == (96, 128)
    assert float(torch.logsumexp(log_density.flatten(), 0)) == pytest.approx(0.0, abs=1e-4)

    # an existing non-empty --out is refused before anything is read, unless --overwrite
    assert main(["convert", "official", "deepgaze1", str(source), "--out", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["convert", "official", "deepgaze1", str(source), "--out", str(out), "--overwrite"]) == 0


def _convert_error(tmp_path, capsys, data: bytes, name="bad.pth") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    assert main(["convert", "official", "deepgaze1", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err  # one line
    assert not (tmp_path / "out").exists()
    return err


def test_convert_cli_refusals_are_one_line(stand_in, tmp_path, capsys):
    assert main(["convert", "official", "deepgaze1", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "o")]) == 1
    assert "missing.pth: no such file" in capsys.readouterr().err

    assert "not a PyTorch weights file" in _convert_error(tmp_path, capsys, b"just some text, not a pickle")
    assert "not a PyTorch weights file" in _convert_error(tmp_path, capsys, b"PK\x03\x04broken zip")

    class Gadget:  # an object that only a full unpickle could rebuild
        def __reduce__(self):
            return (print, ("this must never run",))

    buffer = io.BytesIO()
    torch.save({"x": torch.zeros(1), "gadget": Gadget()}, buffer)
    err = _convert_error(tmp_path, capsys, buffer.getvalue())
    assert "full unpickle" in err and "this must never run" not in err

    raw = pickle.dumps({"finalizer.gauss.sigma": 1.0})  # a legacy non-zip pickle of plain data
    assert "bad.pth" in _convert_error(tmp_path, capsys, raw)

    wrong = official.random_published_state_dict("deepgaze1")
    del wrong["finalizer.gauss.sigma"]
    wrong["readout_network.conv0.weight"] = torch.zeros(1, 5, 1, 1)
    wrong["extra.bias"] = torch.zeros(2)
    err = _convert_error(tmp_path, capsys, _pth_bytes(wrong))
    assert "1 missing key(s): finalizer.gauss.sigma" in err
    assert "1 unexpected key(s): extra.bias" in err
    assert "readout_network.conv0.weight (expected shape (1, 4, 1, 1), got (1, 5, 1, 1))" in err


def test_convert_cli_refuses_a_bad_centerbias(stand_in, tmp_path, capsys):
    source = tmp_path / "deepgaze1.pth"
    source.write_bytes(_pth_bytes(official.random_published_state_dict("deepgaze1")))
    cases = {
        "shape.npy": _npy_bytes(np.zeros((512, 512))),
        "dtype.npy": _npy_bytes(np.zeros((1024, 1024), np.float32)),
        "nan.npy": _npy_bytes(np.full((1024, 1024), np.nan)),
        "pickled.npy": _npy_bytes(np.array([{"a": 1}], dtype=object)),
        "text.npy": b"not an array",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        argv = ["convert", "official", "deepgaze1", str(source), "--out", str(tmp_path / "o")]
        code = main([*argv, "--centerbias", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert code == 1 and name in err and err.count("\n") == 1, (name, err)


def test_convert_helpers_are_atomic(stand_in, tmp_path):
    model = _stand_in_converter("deepgaze1", official.random_published_state_dict("deepgaze1"), where="x")
    out = tmp_path / "m"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(ConfigError, match="not empty"):
        release.write_model_directory(model, out, {}, overwrite=False)
    release.write_model_directory(model, out, {"a": 1}, overwrite=True)
    assert not (out / "old.txt").exists() and json.loads((out / "source.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        release.write_model_directory(model, tmp_path / "f", {}, overwrite=True)


# ------------------------------------------------------------------------------------------------
# registry entries with release: (a local HTTP server stands in for GitHub's release downloads)


def _registry(tmp_path, server, *, sha256=None, name="deepgaze1"):
    directory = tmp_path / "registry"
    directory.mkdir(exist_ok=True)
    pin = f'"{sha256}"' if sha256 else "null"
    (directory / f"{name}.yaml").write_text(
        f"""format_version: 2
name: {name}
title: DeepGaze I test entry
description: a test entry
citation: "@misc{{k2015, title={{Deep Gaze I}}}}"
release:
  url: {server.url("/redirect/deepgaze1.pth")}
  sha256: {pin}
  converter: deepgaze1
  centerbias: {{url: {server.url("/redirect/centerbias_mit1003.npy")}, sha256: null}}
evaluation:
  - {{dataset: MIT300, metric: AUC, value: 0.5}}
""",
        encoding="utf-8",
    )
    return directory


def _serve_release(server, state):
    server.files = {"deepgaze1.pth": _pth_bytes(state), "centerbias_mit1003.npy": _npy_bytes(_centerbias())}
    return hashlib.sha256(server.files["deepgaze1.pth"]).hexdigest()


def test_registry_release_downloads_converts_once_then_works_offline(
    stand_in, tmp_path, server, cache, monkeypatch, capsys
):
    state = official.random_published_state_dict("deepgaze1", seed=5)
    digest = _serve_release(server, state)
    registry = _registry(tmp_path, server)
    model = deepgaze_hub.load("deepgaze1", registry=registry)
    err = capsys.readouterr().err
    assert f"sha256 {digest}" in err and f"release.sha256: {digest}" in err and "deepgaze1.yaml" in err
    assert float(model.finalizer.sigma.detach()) == pytest.approx(float(state["finalizer.gauss.sigma"]))
    assert model.card_info.name == "deepgaze1" and digest in model.card_info.training
    converted = cache / "converted" / f"deepgaze1-{digest[:12]}"
    assert json.loads((converted / "source.json").read_text())["sha256"] == digest
    downloads = len(server.file_requests())
    assert downloads == 2

    # second load: the same process or another, no server, offline, no pickle read
    server.shutdown()
    monkeypatch.setenv("DEEPGAZE_HUB_OFFLINE", "1")
    monkeypatch.setattr(official, "convert_official", None)  # converting again would fail
    monkeypatch.setattr(torch, "load", None)  # and so would reading the pickle
    release._announced.clear()
    again = deepgaze_hub.load("deepgaze1", registry=registry, map_location="cpu")
    image = _image(tmp_path / "photo.png")
    assert torch.equal(again.predict(image), model.predict(image))
    assert len(server.file_requests()) == downloads
    assert capsys.readouterr().err == ""  # nothing converted, nothing to pin announced again

    # pinning the printed sha256 makes the next load skip even hashing the release file
    pinned = _registry(tmp_path, server, sha256=digest)
    centerbias_sha256 = json.loads((converted / "source.json").read_text())["centerbias_sha256"]
    text = (pinned / "deepgaze1.yaml").read_text().replace(
        "centerbias_mit1003.npy, sha256: null", f"centerbias_mit1003.npy, sha256: {centerbias_sha256}"
    )
    (pinned / "deepgaze1.yaml").write_text(text)
    monkeypatch.setattr(release, "download_release", None)
    assert torch.equal(deepgaze_hub.load("deepgaze1", registry=pinned).predict(image), model.predict(image))
    assert capsys.readouterr().err == ""


def test_registry_release_refuses_wrong_pin_and_wrong_layout(stand_in, tmp_path, server):
    _serve_release(server, official.random_published_state_dict("deepgaze1"))
    with pytest.raises(WeightsError, match="is pinned"):
        deepgaze_hub.load("deepgaze1", registry=_registry(tmp_path, server, sha256="0" * 64))

    wrong = official.random_published_state_dict("deepgaze1")
    wrong["readout_network.conv0.weight"] = torch.zeros(2, 4, 1, 1)
    server.files["deepgaze1.pth"] = _pth_bytes(wrong)
    server.etag = '"v2"'
    with pytest.raises(WeightsError, match=r"wrong shape: readout_network.conv0.weight"):
        deepgaze_hub.load("deepgaze1", registry=_registry(tmp_path, server))


def test_registry_release_members_and_offline_without_cache(stand_in, tmp_path, server, monkeypatch):
    _serve_release(server, official.random_published_state_dict("deepgaze1"))
    registry = _registry(tmp_path, server)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="offline mode is on.*curl"):
        deepgaze_hub.load("deepgaze1", registry=registry)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert deepgaze_hub.load("deepgaze1", registry=registry, members=[0]).num_members == 1
    with pytest.raises(ConfigError, match="pretrained=False"):
        deepgaze_hub.load("deepgaze1", registry=registry, pretrained=False)
    with pytest.raises(ConfigError, match="converter"):
        Registry(registry).get("deepgaze1").config()


def test_predict_cli_with_a_release_model(stand_in, tmp_path, server, monkeypatch, capsys):
    """`deepgaze-hub predict --model deepgaze1` downloads, converts and predicts like any model."""
    from deepgaze_hub.hub import registry as registry_module

    _serve_release(server, official.random_published_state_dict("deepgaze1"))
    directory = _registry(tmp_path, server)
    monkeypatch.setattr(registry_module, "default_directory", lambda: directory)
    image = _image(tmp_path / "photo.png")
    out = tmp_path / "out"
    code = main(["predict", str(image), "--model", "deepgaze1", "--out", str(out), "--full-size", "--format", "npy"])
    assert code == 0, capsys.readouterr().err
    (result,) = (tmp_path / "out").rglob("*.npy")
    log_density = np.load(result)
    assert log_density.shape == (96, 128) and abs(np.log(np.exp(log_density.astype(np.float64)).sum())) < 1e-3


def test_release_entries_are_checked(tmp_path):
    def entry(body: str):
        path = tmp_path / "deepgaze1.yaml"
        path.write_text("name: deepgaze1\n" + body, encoding="utf-8")
        return path

    url = "https://github.com/matthias-k/DeepGaze/releases/download/v1.01/deepgaze1.pth"
    ok = f"release: {{url: {url}, sha256: null, converter: deepgaze1}}\n"
    assert parse_entry(entry("format_version: 2\n" + ok)).status == "release"
    with pytest.raises(ConfigError, match="format_version: 2"):
        parse_entry(entry("format_version: 1\n" + ok))
    with pytest.raises(ConfigError, match="converter must be one of"):
        parse_entry(entry(f"format_version: 2\nrelease: {{url: {url}, converter: deepgaze3}}\n"))
    with pytest.raises(ConfigError, match="64 lowercase hex"):
        parse_entry(entry(f"format_version: 2\nrelease: {{url: {url}, converter: deepgaze1, sha256: '{'G' * 64}'}}\n"))
    with pytest.raises(ConfigError, match="has no hub"):
        parse_entry(entry("format_version: 2\n" + ok + "hub: {repo_id: a/b}\n"))
    with pytest.raises(ConfigError, match="needs hub: and architecture"):
        parse_entry(entry("format_version: 2\n"))


def test_shipped_release_entries_and_hubconf():
    registry = Registry()
    for name, kind in (("deepgaze1", "deepgaze1"), ("deepgaze2e", "deepgaze2e")):
        entry = registry.get(name)
        assert entry.release.converter == kind and entry.release.sha256 is None
        assert entry.release.url.startswith("https://github.com/matthias-k/DeepGaze/releases/download/")
        assert entry.release.centerbias.url.endswith("/v1.0.0/centerbias_mit1003.npy")
        assert entry.citation and entry.published
    figures = {row.metric: row.value for row in registry.get("deepgaze2e").evaluation}
    assert figures == {"IG": 1.07, "AUC": 0.883, "NSS": 2.53}
    import hubconf

    assert callable(hubconf.deepgaze1) and callable(hubconf.deepgaze2e)


# ------------------------------------------------------------------------------------------------
# the real DeepGaze I layout and the real converter


@pytest.mark.slow
def test_real_deepgaze1_layout_from_the_release_server_to_a_prediction(tmp_path, server, cache, monkeypatch, capsys, one_thread):
    """A random state dict in the real DeepGaze I layout, served like the authors' release: the
    registry entry downloads, checks, converts (the real converter) and caches it; the prediction
    equals tests/reference_family.py's literal forward pass with the authors' centre bias; the next
    load is offline; `deepgaze-hub convert official` gives the same model from the cached file."""
    from reference_family import authors_centerbias, deepgaze1_forward

    state = official.random_published_state_dict("deepgaze1", seed=1)
    digest = _serve_release(server, state)
    registry = _registry(tmp_path, server)
    model = deepgaze_hub.load("deepgaze1", registry=registry)
    images = torch.from_numpy(np.random.default_rng(1).uniform(0, 255, (1, 3, 160, 200)).astype(np.float32))
    centerbias = torch.from_numpy(authors_centerbias(_centerbias(), 160, 200)).float()[None]
    expected = deepgaze1_forward(state, images, centerbias)
    with torch.no_grad():
        ours = model(images)
    assert ours.shape == expected.shape and float((ours - expected).abs().max()) < 1e-3

    server.shutdown()
    monkeypatch.setenv("DEEPGAZE_HUB_OFFLINE", "1")
    convert = official.convert_official
    monkeypatch.setattr(official, "convert_official", None)
    offline = deepgaze_hub.load("deepgaze1", registry=registry)
    with torch.no_grad():
        assert torch.equal(offline(images), ours)
    monkeypatch.delenv("DEEPGAZE_HUB_OFFLINE")
    monkeypatch.setattr(official, "convert_official", convert)

    cached = dl.release_path(server.url("/redirect/deepgaze1.pth"))
    npy = dl.release_path(server.url("/redirect/centerbias_mit1003.npy"))
    out = tmp_path / "dg1"
    assert main(["convert", "official", "deepgaze1", str(cached), "--out", str(out), "--centerbias", str(npy)]) == 0
    assert capsys.readouterr().out.strip() == digest
    with torch.no_grad():
        assert torch.equal(deepgaze_hub.load(out)(images), ours)
    card = (out / "README.md").read_text()
    assert "Kümmerer" in card and digest in card and "do not re-host" in card
