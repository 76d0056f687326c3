"""pyproject.toml's dependency floors and .ci/min_versions.py, which turns them into CI's pins."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _min_versions():
    spec = importlib.util.spec_from_file_location("min_versions", ROOT / ".ci" / "min_versions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "requirement, pinned",
    [
        ("pillow>=10.1", ("pillow", "pillow==10.1")),
        ("huggingface_hub >= 1.22, <3", ("huggingface_hub", "huggingface_hub==1.22")),
        ("uvicorn[standard]>=0.30", ("uvicorn", "uvicorn[standard]==0.30")),
        ('tomli>=2.0; python_version < "3.11"', ("tomli", 'tomli==2.0 ; python_version < "3.11"')),
        ("wheel", ("wheel", "wheel")),
    ],
)
def test_pin_turns_a_floor_into_an_exact_version(requirement, pinned):
    assert _min_versions().pin(requirement) == pinned


def test_every_dependency_has_a_floor_and_ci_pins_them_all(capsys):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["serve"]
    assert all(">=" in requirement for requirement in requirements), requirements
    assert _min_versions().main(["--extra", "serve", "--skip", "torch", "--skip", "torchvision"]) == 0
    pins = capsys.readouterr().out.split()
    assert len(pins) == len(requirements) - 2
    assert all("==" in pin for pin in pins) and not any(pin.startswith(("torch==", "torchvision==")) for pin in pins)


def test_the_build_backend_floor_accepts_an_spdx_licence(capsys):
    assert _min_versions().main(["--build-system"]) == 0
    setuptools = [pin for pin in capsys.readouterr().out.split() if pin.startswith("setuptools==")]
    major = int(setuptools[0].split("==")[1].split(".")[0])
    assert major >= 77  # older setuptools reject `license = "Apache-2.0"` (PEP 639)
