#!/usr/bin/env python3
"""Print pip requirement pins at the declared minimum versions of pyproject.toml's dependencies.

Usage: python .ci/min_versions.py [--extra serve] [--skip torch --skip torchvision] [--build-system]

Reads ``[project].dependencies`` (and the named optional-dependency groups), or with
``--build-system`` the ``[build-system].requires``, and turns every ``name>=X`` into ``name==X``,
one line each, so that CI installs exactly the floors pyproject.toml declares.
A requirement without a ``>=`` floor is printed as it is; ``--skip NAME`` leaves a package out
(for example torch, whose minimum would be a multi-GB download that CI cannot afford).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pin(requirement: str) -> tuple[str, str]:
    """``("name", "name==floor")`` for ``name>=floor[,<cap]``; the requirement itself if it has no floor."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise SystemExit(f"min_versions: cannot read the requirement {requirement!r}")
    name, extras, spec, marker = match.group(1), match.group(2) or "", match.group(3), match.group(4) or ""
    floors = [part.strip()[2:].strip() for part in spec.split(",") if part.strip().startswith(">=")]
    if not floors:
        return name, requirement.strip()
    return name, f"{name}{extras}=={floors[0]}{(' ' + marker) if marker else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=Path(__file__).resolve().parent.parent / "pyproject.toml", help="the pyproject.toml to read (default: the repository's)")
    parser.add_argument("--extra", action="append", default=[], metavar="GROUP", help="also pin this optional-dependency group (repeatable)")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME", help="leave this package out (repeatable)")
    parser.add_argument("--build-system", action="store_true", help="pin [build-system].requires instead of the dependencies")
    args = parser.parse_args(argv)
    pyproject = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))
    project = pyproject["project"]
    own = _canonical(project["name"])
    requirements = list(pyproject["build-system"]["requires"] if args.build_system else project.get("dependencies", []))
    for group in args.extra:
        if group not in project.get("optional-dependencies", {}):
            raise SystemExit(f"min_versions: {args.pyproject} has no optional-dependencies group {group!r}")
        requirements += project["optional-dependencies"][group]
    skipped = {_canonical(name) for name in args.skip}
    for requirement in requirements:
        name, pinned = pin(requirement.split("#")[0])
        if _canonical(name) not in skipped and _canonical(name) != own:
            print(pinned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
