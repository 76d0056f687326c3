"""push_to_hub / from_pretrained / registry loading through huggingface_hub's real client and a local Hub."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hubserver import make_trained_model, set_offline, start_local_hub
from safetensors.torch import load_file, save_file

from deepgaze_hub import ConfigError, DeepGaze, PublishError, WeightsError
from deepgaze_hub.hub import load
from deepgaze_hub.hub.integrity import file_sha256
from deepgaze_hub.hub.publish import push

pytest_plugins = ["hubserver"]  # the local_hub fixture
REPO = "lab/deepgaze-test"
# huggingface_hub's LFS upload hands httpx a file object; httpx2 warns about that API, not about us.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def images(seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 3, 72, 96, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.fixture(scope="module")
def model() -> DeepGaze:
    return make_trained_model(num_members=3)


@pytest.mark.parametrize("lfs", [True, False], ids=["lfs-upload", "regular-upload-xet-client"])
def test_push_then_load_by_pinned_revision_is_bit_identical(model, monkeypatch, tmp_path, lfs):
    hub = start_local_hub(monkeypatch, tmp_path / "hf", lfs=lfs)
    try:
        commit = model.push_to_hub(REPO)
        loaded = DeepGaze.from_pretrained(REPO, revision=commit.oid)
    finally:
        hub.stop()
    stored = hub.repos[REPO].commits[commit.oid]
    assert stored["model.safetensors"].lfs is lfs
    assert {"config.json", "model.safetensors", "README.md"} <= set(stored)
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(loaded.member_log_densities(x), model.member_log_densities(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    card = stored["README.md"].data.decode()
    assert f'from_pretrained("{REPO}"' in card and "library_name: deepgaze-hub" in card


def test_download_lands_in_the_standard_cache_layout(model, local_hub, tmp_path):
    commit = model.push_to_hub(REPO).oid
    DeepGaze.from_pretrained(REPO, revision=commit)
    snapshot = tmp_path / "hf" / "hub" / "models--lab--deepgaze-test" / "snapshots" / commit
    assert (snapshot / "model.safetensors").is_file() and (snapshot / "config.json").is_file()
    assert not (snapshot / "README.md").exists()  # only the two files loading needs are fetched
    weights = hub_file(local_hub, commit, "model.safetensors")
    assert file_sha256(snapshot / "model.safetensors") == weights.sha256


def test_unpinned_load_follows_main_and_pinned_load_does_not(model, local_hub):
    first = model.push_to_hub(REPO).oid
    changed = make_trained_model(num_members=3, seed=5)
    second = changed.push_to_hub(REPO).oid
    assert first != second
    x = images()
    with torch.no_grad():
        assert torch.equal(DeepGaze.from_pretrained(REPO)(x), changed(x))
        assert torch.equal(DeepGaze.from_pretrained(REPO, revision=first)(x), model(x))


def test_load_names_hub_repos_explicitly_with_a_revision(model, local_hub):
    first = model.push_to_hub(REPO).oid
    changed = make_trained_model(num_members=3, seed=5)
    second = changed.push_to_hub(REPO).oid
    x = images()
    with torch.no_grad():
        assert torch.equal(load(f"hf-hub:{REPO}@{first}")(x), model(x))
        assert torch.equal(load(f"hf-hub:{REPO}", revision=first)(x), model(x))
        assert torch.equal(load(f"hf-hub:{REPO}")(x), changed(x))  # main
        assert torch.equal(load(f"hf-hub:{REPO}@{second}", members=[2, 0])(x), changed(x, members=[2, 0]))
    with pytest.raises(ConfigError, match="names revision"):
        load(f"hf-hub:{REPO}@{first}", revision=second)
    with pytest.raises(WeightsError, match=r"no model directory lab/deepgaze-test.*write hf-hub:lab/deepgaze-test"):
        load(REPO)  # without hf-hub: it is a path, never guessed to be a repo


def test_both_files_come_from_one_commit(model, local_hub, tmp_path):
    """A branch that moves between the two downloads cannot mix one commit's config with another's weights."""
    first = model.push_to_hub(REPO).oid
    DeepGaze.from_pretrained(REPO)
    snapshot = tmp_path / "hf" / "hub" / "models--lab--deepgaze-test" / "snapshots" / first
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "model.safetensors"]
    resolved = {path.rsplit("/", 1)[0] for method, path in local_hub.requests if "/resolve/" in path}
    assert resolved == {f"/{REPO}/resolve/{first}"}  # both files fetched at the commit, not at "main"


def test_wrong_revision_names_repo_and_revision(model, local_hub):
    model.push_to_hub(REPO)
    with pytest.raises(WeightsError, match=r"lab/deepgaze-test@0{40}: the repo has no revision"):
        DeepGaze.from_pretrained(REPO, revision="0" * 40)
    with pytest.raises(WeightsError, match="no such model repo"):
        DeepGaze.from_pretrained("lab/does-not-exist")


def test_missing_files_are_reported(model, local_hub, tmp_path):
    model.save_pretrained(tmp_path / "saved")
    only_config = local_hub.add_commit(
        "lab/no-weights", {"config.json": (tmp_path / "saved" / "config.json").read_bytes()}
    )
    with pytest.raises(WeightsError, match=r"no model\.safetensors \(files: \['\.gitattributes', 'config\.json'\]\)"):
        DeepGaze.from_pretrained("lab/no-weights", revision=only_config)
    only_weights = local_hub.add_commit(
        "lab/no-config", {"model.safetensors": (tmp_path / "saved" / "model.safetensors").read_bytes()}
    )
    with pytest.raises(WeightsError, match="has no config.json"):
        DeepGaze.from_pretrained("lab/no-config", revision=only_weights)


class _Trap:
    """Unpickling this runs code: it writes a marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled!"))


def test_pickle_only_repo_is_refused_and_never_downloaded(model, local_hub, tmp_path):
    marker = tmp_path / "was-unpickled"
    payload = pickle.dumps({"readout.layers.0.weight": _Trap(marker)})
    model.save_pretrained(tmp_path / "saved")
    commit = local_hub.add_commit(
        "lab/pickles",
        {
            "config.json": (tmp_path / "saved" / "config.json").read_bytes(),
            "pytorch_model.bin": payload,
            "model.ckpt": payload,
        },
    )
    with pytest.raises(
        WeightsError, match=r"only pickle files \['model\.ckpt', 'pytorch_model\.bin'\].*never unpickles"
    ):
        DeepGaze.from_pretrained("lab/pickles", revision=commit)
    assert not marker.exists()
    fetched = [path for method, path in local_hub.requests if method == "GET" and "/resolve/" in path]
    assert not [path for path in fetched if path.endswith((".bin", ".ckpt"))]


def tamper(state: dict[str, torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    state = dict(state)
    if how == "wrong-shape":
        state["finalizer.sigma"] = torch.ones(4)
    elif how == "extra-key":
        state["readout.layers.9.weight"] = torch.zeros(1)
    elif how == "missing-key":
        del state["finalizer.centerbias_weight"]
    return state


@pytest.mark.parametrize(
    "how, message",
    [
        ("wrong-shape", r"wrong shapes \['finalizer\.sigma: file \(4,\), model \(3,\)'\]"),
        ("extra-key", r"unexpected tensors \['readout\.layers\.9\.weight'\]"),
        ("missing-key", r"missing tensors \['finalizer\.centerbias_weight'\]"),
    ],
)
def test_tampered_safetensors_in_a_repo_are_refused(model, local_hub, tmp_path, how, message):
    model.save_pretrained(tmp_path / "saved")
    state = tamper(load_file(tmp_path / "saved" / "model.safetensors"), how)
    save_file(state, tmp_path / "bad.safetensors")
    commit = local_hub.add_commit(
        "lab/tampered",
        {
            "config.json": (tmp_path / "saved" / "config.json").read_bytes(),
            "model.safetensors": (tmp_path / "bad.safetensors").read_bytes(),
        },
    )
    with pytest.raises(WeightsError, match=message):
        DeepGaze.from_pretrained("lab/tampered", revision=commit)


def test_offline_mode_uses_the_cache_and_never_contacts_the_hub(model, local_hub, monkeypatch):
    commit = model.push_to_hub(REPO).oid
    DeepGaze.from_pretrained(REPO, revision=commit)  # fills the cache
    DeepGaze.from_pretrained(REPO)  # and the ref of main
    seen = len(local_hub.requests)
    set_offline(monkeypatch)
    x = images()
    with torch.no_grad():
        assert torch.equal(DeepGaze.from_pretrained(REPO, revision=commit)(x), model(x))
        assert torch.equal(DeepGaze.from_pretrained(REPO)(x), model(x))
    assert len(local_hub.requests) == seen


def test_offline_mode_without_cache_fails_fast_with_what_to_do(model, local_hub, monkeypatch):
    commit = model.push_to_hub(REPO).oid
    seen = len(local_hub.requests)
    set_offline(monkeypatch)
    start = time.monotonic()
    with pytest.raises(WeightsError) as error:
        DeepGaze.from_pretrained(REPO, revision=commit)
    assert time.monotonic() - start < 5  # no retries against an unreachable server
    message = str(error.value)
    assert f"{REPO}@{commit}" in message and "offline mode is on" in message and "HF_HUB_OFFLINE unset" in message
    assert len(local_hub.requests) == seen


def test_offline_cli_run_with_hf_hub_offline_set_at_startup(model, local_hub, tmp_path):
    """HF_HUB_OFFLINE=1 in the environment of a fresh process: cached files work, missing ones fail fast."""
    from PIL import Image

    commit = model.push_to_hub(REPO).oid
    DeepGaze.from_pretrained(REPO, revision=commit)
    Image.new("RGB", (64, 48), (200, 120, 40)).save(tmp_path / "image.png")
    seen = len(local_hub.requests)

    def predict(hf_home: Path, out: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "deepgaze_hub", "predict", str(tmp_path / "image.png"), "--model", f"hf-hub:{REPO}",
                   "--revision", commit, "--out", str(out), "--format", "npy", "--device", "cpu"]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub")}
        return subprocess.run(command, env=env, check=False, capture_output=True, text=True, timeout=300)

    cached = predict(tmp_path / "hf", tmp_path / "out")
    assert cached.returncode == 0, cached.stderr[-2000:]
    expected = model.predict(tmp_path / "image.png").numpy()
    assert np.array_equal(np.load(tmp_path / "out" / "image.npy"), expected)
    empty = predict(tmp_path / "empty-home", tmp_path / "out2")
    assert empty.returncode == 1
    assert f"{REPO}@{commit}" in empty.stderr and "offline mode is on" in empty.stderr
    assert len(local_hub.requests) == seen


def hub_file(hub, commit: str, name: str):
    return hub.file(REPO, commit, name)


def publish_registry_entry(directory: Path, name: str, publication, architecture: dict) -> Path:
    """A registry directory holding one published entry (what a maintainer writes after a push)."""
    entry = {
        "format_version": 1,
        "name": name,
        "title": "Test ensemble",
        "architecture": architecture,
        **yaml.safe_load(publication.registry_pin()),
        "datasets": ["synthetic"],
        "evaluation": [
            {"dataset": "synthetic", "split": "held-out", "metric": "IG", "value": 0.5, "unit": "bits/fixation"}
        ],
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
    return directory


def test_registry_model_round_trip_with_pin_and_checksums(model, local_hub, tmp_path, monkeypatch):
    model.save_pretrained(tmp_path / "trained")
    publication = push(tmp_path / "trained", REPO, revision_tag="v1.0")
    assert local_hub.repos[REPO].tags["v1.0"] == publication.revision
    architecture = json.loads((tmp_path / "trained" / "config.json").read_text())
    registry = publish_registry_entry(tmp_path / "registry", "test-ensemble", publication, architecture)

    x = images()
    loaded = load("test-ensemble", registry=registry)
    sub = load("test_ensemble", members=[2, 0], registry=registry)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(sub(x), model(x, members=[2, 0]))
        assert torch.equal(load("test_ensemble", registry=registry)(x), model(x))
    assert loaded.card_info.name == "test-ensemble" and loaded.card_info.evaluation[0].metric == "IG"
    assert sub.num_members == 2 and sub.card_info.evaluation == []

    set_offline(monkeypatch)  # cached now: the pinned release loads offline
    with torch.no_grad():
        assert torch.equal(load("test-ensemble", registry=registry)(x), model(x))


def test_registry_detects_a_tampered_cache_file_and_recovers_after_deleting_it(model, local_hub, tmp_path):
    model.save_pretrained(tmp_path / "trained")
    publication = push(tmp_path / "trained", REPO)
    architecture = json.loads((tmp_path / "trained" / "config.json").read_text())
    registry = publish_registry_entry(tmp_path / "registry", "test-ensemble", publication, architecture)
    load("test-ensemble", registry=registry)
    cached = next((tmp_path / "hf" / "hub").glob("models--lab--deepgaze-test/snapshots/*/model.safetensors"))
    blob = cached.resolve()
    state = load_file(blob)
    state["finalizer.sigma"] = state["finalizer.sigma"] + 1  # same keys and shapes: only the checksum can tell
    save_file(state, blob)
    with pytest.raises(
        WeightsError,
        match=rf"model\.safetensors has sha256 [0-9a-f]{{64}}, but {publication.files['model.safetensors']} is pinned",
    ) as error:
        load("test-ensemble", registry=registry)
    assert str(blob) in str(error.value)
    blob.unlink()  # what the message says to do
    with torch.no_grad():
        assert torch.equal(load("test-ensemble", registry=registry)(images()), model(images()))


def test_registry_refuses_an_architecture_that_differs_from_the_release(model, local_hub, tmp_path):
    model.save_pretrained(tmp_path / "trained")
    publication = push(tmp_path / "trained", REPO)
    architecture = json.loads((tmp_path / "trained" / "config.json").read_text())
    architecture["nonlinearity"] = "relu"
    registry = publish_registry_entry(tmp_path / "registry", "test-ensemble", publication, architecture)
    with pytest.raises(ValueError, match=r"nonlinearity: registry 'relu', published 'softplus'"):
        load("test-ensemble", registry=registry)


def test_push_without_write_access_says_how_to_log_in(model, local_hub, tmp_path, monkeypatch):
    model.save_pretrained(tmp_path / "trained")
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token")
    with pytest.raises(PublishError, match=r"HTTP 401.*hf auth login"):
        push(tmp_path / "trained", REPO)
    assert REPO not in local_hub.repos


def test_push_cli_prints_the_registry_pin(model, local_hub, tmp_path, capsys):
    from deepgaze_hub.cli import main

    model.save_pretrained(tmp_path / "trained")
    assert main(["push", str(tmp_path / "trained"), REPO, "--revision-tag", "v2"]) == 0
    pin = yaml.safe_load(capsys.readouterr().out)["hub"]
    assert pin["repo_id"] == REPO and local_hub.repos[REPO].tags["v2"] == pin["revision"]
    for name in ("config.json", "model.safetensors"):
        assert pin["files"][name] == hub_file(local_hub, pin["revision"], name).sha256
