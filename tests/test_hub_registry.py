"""The registry of named models (hub_configs/), the one loader `deepgaze_hub.hub.load`, hubconf.py, packaging."""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomllib
import torch
import yaml

from deepgaze_hub import ConfigError, DeepGaze, ModelNotPublishedError, WeightsError
from deepgaze_hub.hub import ModelSource, load
from deepgaze_hub.hub.registry import Registry, default_directory, list_models, parse_entry

ROOT = Path(__file__).resolve().parents[1]
RANDOM_BACKBONE = {"weights": None}  # no ImageNet download in tests


def test_the_registry_of_this_checkout_declares_the_paper_model():
    assert default_directory() == ROOT / "hub_configs"
    assert "deepgaze2-vgg19" in list_models()
    assert "deepgaze2-vgg19" not in list_models(published_only=True)
    entry = Registry().get("deepgaze2-vgg19")
    config = entry.config()
    assert (config.backbone.name, config.backbone.weights, config.num_members) == ("vgg19", "IMAGENET1K_V1", 10)
    assert config.backbone.layers == ["features.28", "features.29", "features.31", "features.32", "features.35"]
    assert entry.recipe == "recipes/deepgaze2-vgg19.yaml" and not entry.published


def test_hubconf_publishes_exactly_the_registry_models():
    """What torch.hub.list shows: the callables of hubconf.py not starting with "_"."""
    hubconf = _import_hubconf(ROOT)
    entry_points = [name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")]
    assert entry_points == sorted(entry.entry_point for entry in Registry().entries()) == ["deepgaze1", "deepgaze2_vgg19", "deepgaze2e"]


def test_hubconf_entry_points_follow_the_registry_directory(tmp_path):
    checkout = _checkout(tmp_path)
    _write(checkout / "hub_configs", "tiny-extra", title="A tiny extra model")
    hubconf = _import_hubconf(checkout)
    assert hubconf.tiny_extra.__name__ == "tiny_extra" and hubconf.tiny_extra.__doc__.startswith("A tiny extra model")
    assert "not published" in hubconf.tiny_extra.__doc__ and "members" in hubconf.tiny_extra.__doc__


def test_every_registry_entry_has_a_documented_hubconf_entry_point():
    hubconf = _import_hubconf(ROOT)
    for entry in Registry().entries():
        function = getattr(hubconf, entry.entry_point)
        assert function.__doc__
        if entry.release is not None:  # converted from the authors' file on first load (tests/test_family_hub.py)
            assert "release" in function.__doc__ and entry.release.url in function.__doc__
            continue
        model = function(pretrained=False, members=[0], backbone=RANDOM_BACKBONE)
        assert model.card_info.name == entry.name and model.config.backbone.layers == entry.config().backbone.layers
    assert all(importlib.util.find_spec(name) for name in hubconf.dependencies)


def test_declared_model_says_it_is_not_published_and_how_to_train_it():
    with pytest.raises(ModelNotPublishedError) as error:
        load("deepgaze2-vgg19")
    message = str(error.value)
    assert "not published" in message and "pretrained=False" in message
    assert "deepgaze-hub train --config" in message and "recipes/deepgaze2-vgg19.yaml" in message


def test_untrained_load_builds_the_declared_architecture_with_overrides_and_members():
    torch.manual_seed(0)
    model = load("deepgaze2-vgg19", pretrained=False, backbone=RANDOM_BACKBONE, resize_mode="antialias")
    assert model.num_members == 10 and model.config.resize_mode == "antialias"
    assert model.config.backbone.weights is None and model.config.backbone.name == "vgg19"
    assert model.card_info.name == "deepgaze2-vgg19" and model.card_info.evaluation == []
    subset = load("deepgaze2_vgg19", pretrained=False, members=[7, 2], backbone=RANDOM_BACKBONE)
    assert subset.num_members == 2 and "members [7, 2]" in subset.card_info.title
    with pytest.raises(ConfigError, match="unknown field num_memberz"):
        load("deepgaze2-vgg19", pretrained=False, backbone=RANDOM_BACKBONE, num_memberz=3)
    with pytest.raises(ConfigError, match="num_members must be an integer, got '3'"):
        load("deepgaze2-vgg19", pretrained=False, backbone=RANDOM_BACKBONE, num_members="3")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"no model named 'deepgaze9' .*known: \['deepgaze1', 'deepgaze2-vgg19', 'deepgaze2e'\]"):
        Registry().get("deepgaze9")
    with pytest.raises(WeightsError, match="no model directory deepgaze9: it does not exist. It is not a registry name"):
        load("deepgaze9")


def _write(directory: Path, name: str, **changes) -> Path:
    entry = yaml.safe_load((ROOT / "hub_configs" / "deepgaze2-vgg19.yaml").read_text())
    entry["name"] = name
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(entry))
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format_version": 3}, "format_version 3 is not one this deepgaze-hub reads"),
        ({"format_version": True}, "format_version True is not one this deepgaze-hub reads"),
        ({"colour": "blue"}, "unknown field colour"),
        ({"title": 5}, "title must be a string, got 5"),
        ({"datasets": "SALICON"}, "datasets must be a list of strings, got 'SALICON'"),
        ({"licenses": ["MIT"]}, "licenses must be a mapping of names to strings"),
        ({"hub": "a/b"}, "hub must be a mapping with keys"),
        ({"hub": {"repo_id": "a/b", "revision": 5}}, "hub.revision must be a string or null, got 5"),
        ({"hub": {"repo_id": "a/b", "files": {"config.json": 1}}}, "hub.files.config.json must be a string, got 1"),
        ({"hub": {"repo_id": "a/b", "files": {"x.bin": "f" * 64}}}, r"hub.files pins \['x.bin'\]"),
        ({"hub": {"repo_id": "a/b", "revision": "main", "files": {}}}, "full 40-digit commit hash"),
        (
            {"hub": {"repo_id": "a/b", "revision": "a" * 40, "files": {"config.json": "f" * 64}}},
            r"missing \['model.safetensors'\]",
        ),
        (
            {
                "hub": {
                    "repo_id": "a/b",
                    "revision": "a" * 40,
                    "files": {"config.json": "xyz", "model.safetensors": "f" * 64},
                }
            },
            r"malformed \['config.json'\]",
        ),
        ({"hub": {"repo_id": "no-owner"}}, "repo_id: <owner>/<name>"),
        ({"architecture": {"num_members": 0}}, "architecture: num_members must be >= 1"),
        ({"architecture": {"num_members": 10.0}}, "architecture: num_members must be an integer, got 10.0"),
        ({"architecture": {"centerbias_shape": [100000, 100000]}}, "architecture: centerbias_shape must have entries <= 4096"),
        ({"architecture": "vgg19"}, "architecture must be a mapping of names to"),
        ({"evaluation": [{"dataset": "x", "value": 1.0}]}, "evaluation.0.metric is missing"),
        ({"evaluation": [{"dataset": "x", "metric": "IG", "value": "high"}]}, "evaluation.0.value must be a finite number"),
    ],
)
def test_malformed_entries_name_the_file_and_field(tmp_path, changes, message):
    path = _write(tmp_path, "broken", **changes)
    with pytest.raises(ConfigError, match=message) as error:
        parse_entry(path)
    assert str(path) in str(error.value)


def test_entry_name_must_match_its_file(tmp_path):
    path = _write(tmp_path, "one")
    path.rename(tmp_path / "other.yaml")
    with pytest.raises(ConfigError, match="must equal the file name 'other'"):
        parse_entry(tmp_path / "other.yaml")


def test_model_source_says_which_kind_a_name_is(tmp_path):
    assert ModelSource.parse("deepgaze2-vgg19") == ModelSource("registry", name="deepgaze2-vgg19")
    assert ModelSource.parse("deepgaze2_vgg19") == ModelSource("registry", name="deepgaze2-vgg19")
    assert ModelSource.parse("hf-hub:lab/model") == ModelSource("hf-hub", repo_id="lab/model")
    assert ModelSource.parse("hf-hub:lab/model@v1.0") == ModelSource("hf-hub", repo_id="lab/model", revision="v1.0")
    assert ModelSource.parse("lab/model") == ModelSource("local", path=Path("lab/model"))  # never guessed to be a repo
    assert ModelSource.parse("./deepgaze2-vgg19").kind == "local"
    assert ModelSource.parse(Path("deepgaze2-vgg19")).kind == "local"
    assert str(ModelSource.parse("hf-hub:lab/model@abc")) == "hf-hub:lab/model@abc"
    for bad in ("hf-hub:lab", "hf-hub:lab/model@", "hf-hub:/model", "hf-hub:a/b/c", ""):
        with pytest.raises(ConfigError, match="hf-hub:OWNER/NAME|non-empty"):
            ModelSource.parse(bad)


def test_load_takes_directories_as_paths_or_strings_and_refuses_revisions_for_names(tmp_path):
    torch.manual_seed(0)
    model = load("deepgaze2-vgg19", pretrained=False, backbone=RANDOM_BACKBONE, members=[0])
    model.save_pretrained(tmp_path / "saved")
    x = torch.rand(1, 3, 64, 80) * 255
    with torch.no_grad():
        for spec in (tmp_path / "saved", str(tmp_path / "saved")):
            loaded = load(spec)
            assert isinstance(loaded, DeepGaze) and not loaded.training
            assert torch.equal(loaded(x), model(x))
        antialias = load(tmp_path / "saved", resize_mode="antialias")
    assert antialias.config.resize_mode == "antialias"
    with pytest.raises(ConfigError, match="registry model, pinned"):
        load("deepgaze2-vgg19", revision="abc")
    with pytest.raises(ModelNotPublishedError):
        load("deepgaze2-vgg19")
    with pytest.raises(ConfigError, match="applies to Hub repos"):
        load(tmp_path / "saved", revision="abc")
    with pytest.raises(ConfigError, match="pretrained=False builds the untrained architecture of a registry model"):
        load(tmp_path / "saved", pretrained=False)


def test_a_missing_directory_that_looks_like_a_repo_id_suggests_hf_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match=r"no model directory lab/model: it does not exist\. .*write hf-hub:lab/model"):
        load("lab/model")
    with pytest.raises(WeightsError, match="no model directory"):
        load(tmp_path / "nowhere")


def test_the_model_package_never_imports_the_hub_package():
    """hub/ builds on model/, never the reverse (no import of deepgaze_hub.hub anywhere in model/)."""
    offenders = []
    for path in sorted((ROOT / "src" / "deepgaze_hub" / "model").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                names = [alias.name for alias in node.names]
                if module.startswith("..hub") or module.startswith("deepgaze_hub.hub") or (module == ".." and "hub" in names):
                    offenders.append(f"{path.name}:{node.lineno} from {module} import {names}")
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names if a.name.startswith("deepgaze_hub.hub")]
    assert not offenders


def test_importing_the_model_does_not_import_the_hub_package():
    script = "import sys, deepgaze_hub.model; print(sorted(m for m in sys.modules if m.startswith('deepgaze_hub.hub')))"
    result = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "[]"


def test_list_cli_shows_status(capsys):
    from deepgaze_hub.cli import main

    assert main(["list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("deepgaze2-vgg19"))
    assert line.split()[1:4] == ["declared", "vgg19", "10"]
    assert main(["list", "--published"]) == 0
    assert "deepgaze2-vgg19" not in capsys.readouterr().out


def test_predict_cli_resolves_registry_names(tmp_path, capsys):
    from PIL import Image

    from deepgaze_hub.cli import main

    Image.new("RGB", (40, 32), (120, 30, 200)).save(tmp_path / "image.png")
    status = main(
        ["predict", str(tmp_path / "image.png"), "--model", "deepgaze2-vgg19", "--out", str(tmp_path / "out")]
    )
    assert status == 1
    assert "deepgaze2-vgg19 is declared in the registry" in capsys.readouterr().err


def _import_hubconf(root: Path):
    spec = importlib.util.spec_from_file_location("hubconf_under_test", root / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkout(tmp_path: Path) -> Path:
    """A copy of what a torch.hub checkout holds: hubconf.py, src/ and hub_configs/."""
    checkout = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", checkout / "src", ignore=ignore)
    shutil.copytree(ROOT / "hub_configs", checkout / "hub_configs")
    shutil.copy(ROOT / "hubconf.py", checkout / "hubconf.py")
    return checkout


def test_torch_hub_load_from_a_fresh_interpreter_matches_deepgaze_hub_load(tmp_path):
    checkout = _checkout(tmp_path)
    script = textwrap.dedent(
        f"""
        import sys, torch
        checkout = {str(checkout)!r}
        torch.manual_seed(0)
        model = torch.hub.load(checkout, "deepgaze2_vgg19", source="local", pretrained=False,
                               backbone={{"weights": None}}, members=[0, 4])
        assert "deepgaze_hub" not in [p.rsplit("/", 1)[-1] for p in sys.path if p.startswith(checkout)]
        import deepgaze_hub
        from deepgaze_hub.hub import load
        assert deepgaze_hub.__file__.startswith(checkout + "/src/"), deepgaze_hub.__file__
        assert not any(p.startswith(checkout) for p in sys.path), sys.path
        torch.manual_seed(0)
        same = load("deepgaze2-vgg19", pretrained=False, backbone={{"weights": None}}, members=[0, 4])
        assert type(model) is type(same) and model.config == same.config
        x = torch.rand(1, 3, 64, 80) * 255
        with torch.no_grad():
            assert torch.equal(model(x), same(x))
        print("ok", model.num_members)
        """
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, check=False, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["ok", "2"]


def test_pyproject_ships_the_registry_and_every_package_in_the_wheel():
    """The wheel carries hub_configs/ as deepgaze_hub/hub_configs; an explicit package list must not miss one."""
    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config.get("package-dir", {}).get("deepgaze_hub.hub_configs") == "hub_configs"
    assert set(config["packages"]) == {*find_packages(str(ROOT / "src")), "deepgaze_hub.hub_configs"}
    assert set(config["package-data"]["deepgaze_hub.hub_configs"]) >= {"*.yaml", "recipes/*.yaml"}


@pytest.mark.slow
def test_a_wheel_install_finds_its_registry(tmp_path):
    """Build the wheel, install it into a bare folder and list the models from a fresh interpreter."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(ROOT)],
        check=False, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((tmp_path / "wheel").glob("deepgaze_hub-*.whl"))
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=False, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    script = "import deepgaze_hub.hub.registry as r; print(r.default_directory()); print(r.list_models())"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)},
        check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    directory, names = result.stdout.splitlines()
    assert directory == str(target / "deepgaze_hub" / "hub_configs")
    assert "deepgaze2-vgg19" in names
    assert (target / "deepgaze_hub" / "hub_configs" / "recipes" / "deepgaze2-vgg19.yaml").is_file()
