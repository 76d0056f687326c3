"""The one typed-config mechanism: strict types, bounds, unknown keys, safe files, --set overrides."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from deepgaze_hub.errors import ConfigError
from deepgaze_hub.io.typed import (
    MAX_FILE_BYTES,
    bounded,
    field_help,
    override,
    parse,
    read_json,
    read_yaml,
    to_dict,
    validate,
)


@dataclass
class Inner:
    lr: float = bounded(1e-3, gt=0, help="learning rate")
    milestones: list[int] = bounded(default_factory=lambda: [10], item_ge=0)


@dataclass
class Outer:
    name: str
    count: int = bounded(1, ge=1, le=1000)
    shape: list[int] = bounded(default_factory=lambda: [2, 2], min_len=2, max_len=2, item_ge=2, item_le=4096)
    mode: str = bounded("a", choices=("a", "b"))
    inner: Inner = field(default_factory=Inner)
    optional: int | None = None
    kind: Literal["x", "y"] = "x"
    formats: tuple[str, ...] = ("PNG",)
    table: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self, "Outer")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "a", "count": True}, "count must be an integer, got True"),
        ({"name": "a", "count": 4.0}, "count must be an integer, got 4.0"),
        ({"name": "a", "count": "4"}, "count must be an integer, got '4'"),
        ({"name": "a", "count": 0}, "count must be >= 1 and <= 1000"),
        ({"name": "a", "shape": [100000, 100000]}, "shape must have entries <= 4096"),
        ({"name": "a", "shape": [4, 4, 4]}, "shape must have at most 2 entries"),
        ({"name": "a", "inner": {"lr": "fast"}}, "inner.lr must be a finite number, got 'fast'"),
        ({"name": "a", "inner": {"lr": float("nan")}}, "inner.lr must be a finite number"),
        ({"name": "a", "inner": {"lr": -1}}, "inner.lr must be > 0"),
        ({"name": "a", "inner": {"milestones": [1, "x"]}}, "inner.milestones.1 must be an integer"),
        ({"name": "a", "surprise": 1}, "unknown field surprise"),
        ({}, "name is missing"),
        ({"name": "a", "mode": "c"}, "mode must be one of ['a', 'b']"),
        ({"name": "a", "kind": "z"}, "kind must be one of ['x', 'y']"),
        ({"name": "a", "optional": "x"}, "optional must be an integer"),
        ({"name": "a", "table": {"k": "v"}}, "table.k must be a finite number"),
        ({"name": "a", "inner": 3}, "inner must be a mapping"),
    ],
)
def test_bad_values_name_the_field_and_the_rule(data, message):
    with pytest.raises(ConfigError) as info:
        parse(Outer, data, "cfg.json")
    assert str(info.value).startswith("cfg.json: ")
    assert message in str(info.value)


def test_good_values_are_normalised():
    value = parse(Outer, {"name": "a", "inner": {"lr": 1}, "formats": ["PNG", "JPEG"], "optional": None}, "x")
    assert value.inner.lr == 1.0 and isinstance(value.inner.lr, float)
    assert value.formats == ("PNG", "JPEG")
    assert to_dict(value)["formats"] == ["PNG", "JPEG"]
    assert parse(Outer, to_dict(value), "again") == value


def test_python_construction_is_checked_too():
    with pytest.raises(ConfigError, match="count must be >= 1"):
        Outer("a", count=0)
    built = Outer("a", inner={"lr": 0.5})  # a nested mapping is converted
    assert built.inner == Inner(lr=0.5)


def test_help_text_travels_with_the_field():
    from dataclasses import fields

    assert field_help({f.name: f for f in fields(Inner)}["lr"]) == "learning rate"


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 1024
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than"):
        read_yaml(path, "recipe")
    assert time.perf_counter() - start < 10


def test_reasonable_aliases_are_fine(tmp_path: Path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {lr: 0.1}\nstages: [*b, *b]\n")
    assert read_yaml(path, "recipe")["stages"] == [{"lr": 0.1}, {"lr": 0.1}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a: [1, 2", "is not valid YAML"),
        (b"\xff\xfe\x00bad", "is not UTF-8 text"),
    ],
)
def test_unreadable_yaml(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "r.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        read_yaml(path, "recipe")


def test_files_missing_too_large_or_deeply_nested(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_json(tmp_path / "nope.json", "model config")
    with pytest.raises(ConfigError, match="is not a file"):
        read_json(tmp_path, "model config")
    big = tmp_path / "big.json"
    big.write_text(" " * (MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="at most"):
        read_json(big, "model config")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    if deep.stat().st_size <= MAX_FILE_BYTES:
        with pytest.raises(ConfigError):
            read_json(deep, "model config")


def test_overrides():
    data = {"stages": [{"epochs": 1}], "model": {}}
    override(data, "stages.0.epochs=5")
    override(data, "model.backbone.weights=null")
    override(data, "stages.0.optimizer.milestones=[1, 2]")
    assert data == {"stages": [{"epochs": 5, "optimizer": {"milestones": [1, 2]}}], "model": {"backbone": {"weights": None}}}
    for bad, message in [
        ("stages.3.epochs=1", "not an index"),
        ("stages.0.epochs.x=1", "is a value"),
        ("noequals", "must look like"),
        ("a..b=1", "empty key"),
        ("stages.0.epochs=[1", "not a valid value"),
    ]:
        with pytest.raises(ConfigError, match=message):
            override(data, bad)
