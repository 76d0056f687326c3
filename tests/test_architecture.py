"""The package's import graph keeps the promise of its folder names (docs/architecture.md).

Layers, lowest first; a module may import its own package and the packages of lower layers, never
a package of its own layer or a higher one, so there can be no cycle. Imports inside functions
must not reach our own modules (they would hide a cycle), except in the command line, which
imports each subcommand's machinery only when that subcommand runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import deepgaze_hub

ROOT = Path(deepgaze_hub.__file__).resolve().parent

LAYERS = [
    {"errors", "version", "_lazy"},
    {"io"},
    {"model", "data"},
    {"hub", "baselines", "visualization"},
    {"evaluation"},
    {"training"},
    {"service", "demo"},
    {"cli"},
    {"__init__", "__main__"},
]
LAYER = {name: depth for depth, names in enumerate(LAYERS) for name in names}
LAZY_IMPORTS_ALLOWED = {"cli", "__init__"}


def _package(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py")


def _target(module_parts: tuple[str, ...], node: ast.ImportFrom) -> str | None:
    """The top-level package of deepgaze_hub that ``node`` imports from, or None for third parties."""
    if node.level:
        base = list(module_parts[:-1])
        if node.level > 1:
            base = base[: len(base) - (node.level - 1)]
        names = base + (node.module.split(".") if node.module else [node.names[0].name])
        return names[0].removesuffix(".py") if names else "__init__"
    if node.module and (node.module == "deepgaze_hub" or node.module.startswith("deepgaze_hub.")):
        parts = node.module.split(".")
        return parts[1] if len(parts) > 1 else "__init__"
    return None


def _imports():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside_function = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(function)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("deepgaze_hub"):
                        yield parts, (alias.name.split(".") + ["__init__"])[1], node, id(node) in inside_function
            elif isinstance(node, ast.ImportFrom):
                target = _target(parts, node)
                if target is not None:
                    yield parts, target, node, id(node) in inside_function


def test_every_package_has_a_layer():
    packages = {p.name.removesuffix(".py") for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert packages - set(LAYER) == set(), "add new packages to LAYERS here and in docs/architecture.md"


def test_imports_flow_one_way():
    wrong = []
    for parts, target, node, _ in _imports():
        source = _package(parts)
        if target == source or source == "__init__":
            continue
        if LAYER[target] >= LAYER[source]:
            wrong.append(f"{'/'.join(parts)}:{node.lineno} ({source}, layer {LAYER[source]}) imports {target} (layer {LAYER[target]})")
    assert wrong == []


def test_no_function_level_imports_of_our_own_modules():
    hidden = [
        f"{'/'.join(parts)}:{node.lineno} imports {target}"
        for parts, target, node, in_function in _imports()
        if in_function and _package(parts) not in LAZY_IMPORTS_ALLOWED
    ]
    assert hidden == []


def test_every_public_name_loads_and_the_package_import_is_light():
    import subprocess
    import sys

    for name in deepgaze_hub.__all__:
        assert getattr(deepgaze_hub, name) is not None, name
    code = "import sys, deepgaze_hub; print(sorted(m for m in ('torch', 'lightning', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
