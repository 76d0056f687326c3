"""Typed records from untyped data: one checked way from JSON, YAML or ``--set`` values to dataclasses.

Every setting that comes from a file or a command line (a model's ``config.json``, a training
recipe, a registry entry, the service's settings) is a dataclass. `parse` builds one from a
mapping and `validate` checks one built in Python; both check every field against its annotation
and against the bounds declared with `bounded`, *before* any of it is used, so that a wrong type
or an absurd size is a `ConfigError` naming the file, the field and what is allowed, never a
``TypeError`` deep inside the code or a huge allocation.

Type rules are strict on purpose (files come from anywhere, e.g. any Hub repo): ``true`` is not an
integer, ``4.0`` and ``"4"`` are not integers, NaN and infinities are not numbers; an integer is
accepted where a float is expected; a list is accepted where a tuple is expected.

`read_yaml` and `read_json` read such files with a size limit, and refuse YAML whose aliases
expand to more than `MAX_VALUES` values (a "billion laughs" file of 1 kB otherwise expands to
gigabytes once traversed).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ..errors import ConfigError

#: Largest config, recipe or registry file read, in bytes.
MAX_FILE_BYTES = 1 << 20
#: Most values (mappings, lists and scalars, counted through every alias) a file may expand to.
MAX_VALUES = 100_000

_BOUNDS = "deepgaze_hub.bounds"
_HELP = "help"


@dataclass(frozen=True)
class Bounds:
    """The checks `bounded` attaches to a field; ``None`` means "no limit"."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    min_len: int | None = None
    max_len: int | None = None
    item_ge: float | None = None
    item_le: float | None = None

    def problems(self, value: Any) -> list[str]:
        """What is wrong with an already type-checked ``value`` (empty if nothing)."""
        out = []
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out += _range_problems(value, self.ge, self.gt, self.le, self.lt)
        if self.choices is not None:
            items = value if isinstance(value, (list, tuple)) else [value]
            bad = [item for item in items if item not in self.choices]
            if bad:
                out.append(f"must be one of {list(self.choices)}")
        if isinstance(value, (list, tuple, dict, str)):
            if self.min_len is not None and len(value) < self.min_len:
                out.append(f"must have at least {self.min_len} entries")
            if self.max_len is not None and len(value) > self.max_len:
                out.append(f"must have at most {self.max_len} entries")
        if isinstance(value, (list, tuple)) and (self.item_ge is not None or self.item_le is not None):
            for item in value:
                if isinstance(item, (int, float)) and not isinstance(item, bool):
                    found = _range_problems(item, self.item_ge, None, self.item_le, None)
                    if found:
                        out.append("must have entries " + found[0].removeprefix("must be "))
                        break
        return out


def _range_problems(value: float, ge, gt, le, lt) -> list[str]:
    if ge is not None and not value >= ge:
        return [f"must be >= {ge}" + (f" and <= {le}" if le is not None else "")]
    if gt is not None and not value > gt:
        return [f"must be > {gt}" + (f" and <= {le}" if le is not None else "")]
    if le is not None and not value <= le:
        return [f"must be <= {le}" + (f" and >= {ge}" if ge is not None else "")]
    if lt is not None and not value < lt:
        return [f"must be < {lt}"]
    return []


def bounded(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: typing.Iterable[Any] | None = None,
    min_len: int | None = None,
    max_len: int | None = None,
    item_ge: float | None = None,
    item_le: float | None = None,
    help: str | None = None,
    **field_kwargs: Any,
) -> Any:
    """A `dataclasses.field` whose value `parse` and `validate` check against these bounds.

    ``ge``/``gt``/``le``/``lt`` bound a number; ``choices`` lists the allowed values (of a list's
    entries, for a list); ``min_len``/``max_len`` bound a list's, mapping's or string's length;
    ``item_ge``/``item_le`` bound every number of a list. ``help`` is the field's description
    for people (command-line help is generated from it).
    """
    bounds = Bounds(ge, gt, le, lt, tuple(choices) if choices is not None else None, min_len, max_len, item_ge, item_le)
    metadata = {**field_kwargs.pop("metadata", {}), _BOUNDS: bounds, _HELP: help}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata, **field_kwargs)


def field_help(field: dataclasses.Field) -> str | None:
    """The ``help`` text given to `bounded` for this field, if any."""
    return field.metadata.get(_HELP)


def field_bounds(field: dataclasses.Field) -> Bounds | None:
    """The `Bounds` given to `bounded` for this field, if any."""
    return field.metadata.get(_BOUNDS)


def parse(cls: type, data: Any, where: str) -> Any:
    """Build the dataclass ``cls`` from the mapping ``data``, checking every type and bound.

    ``where`` names the source in errors (a file, ``"--set"``, ``"recipe stages[1]"``). Unknown
    keys, missing required fields, wrong types and values out of bounds raise `ConfigError`.
    """
    return _convert(cls, data, where, "")


def validate(instance: Any, where: str | None = None) -> None:
    """Check an already-built dataclass like `parse` does; normalise its fields in place.

    Meant for ``__post_init__``, so configs built in Python get the same checks as files (a
    nested dataclass given as a mapping is converted, a tuple given for a list becomes a list,
    an int given for a float becomes a float).
    """
    cls = type(instance)
    where = where or cls.__name__
    for field, tp in _fields(cls):
        value = _convert(tp, getattr(instance, field.name), where, field.name, field_bounds(field))
        object.__setattr__(instance, field.name, value)


def to_dict(instance: Any) -> Any:
    """Plain JSON/YAML data of a dataclass (recursively): tuples become lists, paths strings."""
    if dataclasses.is_dataclass(instance) and not isinstance(instance, type):
        return {f.name: to_dict(getattr(instance, f.name)) for f in dataclasses.fields(instance)}
    if isinstance(instance, Mapping):
        return {key: to_dict(value) for key, value in instance.items()}
    if isinstance(instance, (list, tuple)):
        return [to_dict(value) for value in instance]
    if isinstance(instance, Path):
        return str(instance)
    return instance


# -- files -----------------------------------------------------------------------------------------
def read_yaml(path: str | Path, what: str = "file") -> Any:
    """The data of a YAML file, read safely; ``what`` says what the file is ("recipe") in errors."""
    text = _read_text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {path} is not valid YAML: {_one_line(error)}") from None
    check_size(data, f"{what} {path}")
    return data


def read_json(path: str | Path, what: str = "file") -> Any:
    """The data of a JSON file, read safely; ``what`` says what the file is ("model config") in errors."""
    text = _read_text(path, what)
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ConfigError(f"{what} {path} is not valid JSON: {_one_line(error)}") from None
    check_size(data, f"{what} {path}")
    return data


def parse_yaml_value(text: str, where: str) -> Any:
    """One value written in YAML syntax (``5``, ``fast``, ``[1, 2]``, ``null``), e.g. of ``--set``."""
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: {text!r} is not a valid value ({_one_line(error)})") from None
    check_size(value, where)
    return value


def check_size(data: Any, where: str, limit: int = MAX_VALUES) -> None:
    """Refuse data that expands to more than ``limit`` values, counting through shared references."""
    count = 0
    stack = [data]
    while stack:
        value = stack.pop()
        count += 1
        if count > limit:
            raise ConfigError(
                f"{where} expands to more than {limit} values (YAML anchors and aliases repeated "
                "over and over?); it is not a config this program writes or reads"
            )
        if isinstance(value, Mapping):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)


def override(data: dict[str, Any], item: str, where: str = "--set") -> None:
    """Apply one ``a.b.0.c=value`` to nested mappings and lists in place (value in YAML syntax).

    List indices are integers; a missing mapping key on the way is created.
    """
    if "=" not in item:
        raise ConfigError(f"{where} {item!r} must look like key.path=value")
    key, _, text = item.partition("=")
    parts = [part.strip() for part in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"{where} {item!r}: empty key in {key!r}")
    target: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = ".".join(parts[: depth + 1])
        if isinstance(target, list):
            try:
                index = int(part)
                target[index]  # noqa: B018 - only checks that the index exists
            except (ValueError, IndexError):
                raise ConfigError(f"{where} {item!r}: {here} is not an index of a list of {len(target)}") from None
            if last:
                target[index] = parse_yaml_value(text, f"{where} {key}")
            else:
                target = target[index]
        elif isinstance(target, dict):
            if last:
                target[part] = parse_yaml_value(text, f"{where} {key}")
            else:
                target = target.setdefault(part, {})
        else:
            raise ConfigError(f"{where} {item!r}: {'.'.join(parts[:depth])} is a value, not a mapping or list")


def _read_text(path: str | Path, what: str) -> str:
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ConfigError(f"{what} {path} is not a file")
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{what} {path} is {size} bytes; a {what} is at most {MAX_FILE_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{what} {path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


# -- conversion ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> tuple[tuple[dataclasses.Field, Any], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((field, hints[field.name]) for field in dataclasses.fields(cls) if field.init)


def _convert(tp: Any, value: Any, where: str, path: str, bounds: Bounds | None = None) -> Any:
    result = _convert_type(tp, value, where, path)
    if bounds is not None and result is not None:
        problems = bounds.problems(result)
        if problems:
            raise _error(where, path, problems[0], value)
    return result


def _convert_type(tp: Any, value: Any, where: str, path: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(tp, args, value, where, path)
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise _error(where, path, f"must be one of {list(args)}", value)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, where, path)
    if origin in (list, tuple) or tp in (list, tuple):
        return _convert_sequence(tp, origin or tp, args, value, where, path)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _error(where, path, f"must be {_describe(tp)}", value)
        key_type, value_type = args or (Any, Any)
        return {
            _convert(key_type, key, where, _join(path, str(key))): _convert(value_type, item, where, _join(path, str(key)))
            for key, item in value.items()
        }
    return _convert_scalar(tp, value, where, path)


def _convert_union(tp: Any, args: tuple, value: Any, where: str, path: str) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    scalar = all(_is_scalar(option) for option in options)
    for option in options:
        try:
            return _convert(option, value, where, path)
        except ConfigError:
            if len(options) == 1 and not scalar:
                raise  # the nested error names the exact field inside the list or mapping
    raise _error(where, path, f"must be {_describe(tp)}", value)


def _is_scalar(tp: Any) -> bool:
    return tp in (bool, int, float, str, Path) or typing.get_origin(tp) is Literal


def _convert_dataclass(cls: type, value: Any, where: str, path: str) -> Any:
    if isinstance(value, cls):
        validate(value, _join(where, path) if path else where)
        return value
    if not isinstance(value, Mapping):
        raise _error(where, path, f"must be a mapping with keys {[f.name for f, _ in _fields(cls)]}", value)
    known = {field.name: (field, tp) for field, tp in _fields(cls)}
    unknown = sorted(str(key) for key in value if key not in known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(_join(path, key) for key in unknown)}; the known fields are {sorted(known)}"
        )
    kwargs = {}
    for name, (field, tp) in known.items():
        if name in value:
            kwargs[name] = _convert(tp, value[name], where, _join(path, name), field_bounds(field))
        elif field.default is MISSING and field.default_factory is MISSING:
            raise ConfigError(f"{where}: {_join(path, name)} is missing; it is required")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {path + ': ' if path else ''}{error}") from None


def _convert_sequence(tp: Any, origin: type, args: tuple, value: Any, where: str, path: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise _error(where, path, f"must be {_describe(tp)}", value)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise _error(where, path, f"must be {_describe(tp)}", value)
        return tuple(_convert(a, v, where, _join(path, str(i))) for i, (a, v) in enumerate(zip(args, value)))
    item_type = args[0] if args else Any
    items = [_convert(item_type, item, where, _join(path, str(i))) for i, item in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _convert_scalar(tp: Any, value: Any, where: str, path: str) -> Any:
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            return float(value)
    elif tp is str:
        ok = isinstance(value, str)
    elif tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        ok = False
    elif isinstance(tp, type):
        ok = isinstance(value, tp)
    else:  # an annotation this mechanism does not know: accept as is
        return value
    if not ok:
        raise _error(where, path, f"must be {_describe(tp)}", value)
    return value


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return "any value"
    if origin in (Union, types.UnionType):
        options = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(options) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return f"one of {list(args)}"
    if origin in (list, tuple) or tp in (list, tuple):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
        return f"a list of {_plural(args[0]) if args else 'values'}"
    if origin is dict or tp is dict:
        return f"a mapping of names to {_plural(args[1]) if args else 'values'}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", Path: "a path"}
    return names.get(tp, f"a {getattr(tp, '__name__', tp)}")


def _plural(tp: Any) -> str:
    names = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}
    return names.get(tp, _describe(tp))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _error(where: str, path: str, problem: str, value: Any) -> ConfigError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    subject = path or "the value"
    return ConfigError(f"{where}: {subject} {problem}, got {shown}")
