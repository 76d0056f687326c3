"""``deepgaze-hub serve``: the prediction web service (JSON API and web page) for one model.

The limit and batching options are generated from the fields of `ServiceSettings` (their type,
default and help text), so that each setting is described in one place (service/settings.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys
import typing
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DeepGazeError
from ..io.typed import field_help
from ..service.settings import ServiceSettings, check_token
from ._common import add_device_argument, add_model_argument, resolve_device

#: Environment variable holding the service's token (preferred to --token: not shown by ps).
TOKEN_ENV = "DEEPGAZE_HUB_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve predictions over HTTP: a JSON API and a web page",
        description=(
            "Load a model and serve it: a web page at / (upload an image, see its density overlay, "
            "download the results) and a JSON API (POST /v1/predict with the image file as the body, "
            "GET /v1/models, GET /healthz, GET /openapi.json), and pysaliency's scanpath model protocol "
            "(GET /type, POST /conditional_log_density), which the MIT/Tuebingen benchmark and "
            "pysaliency.http_models.HTTPScanpathModel call: as a benchmark container, run "
            "'deepgaze-hub serve --model deepgaze2e --host 0.0.0.0 --port 4000'. Concurrent requests are batched on the "
            "model. Every limit below refuses a request with a 4xx JSON error and the service goes on. "
            f"With a token ({TOKEN_ENV}=..., --token-file or --token), /v1/* and /conditional_log_density need "
            "'Authorization: Bearer <token>' (the page asks for it; pysaliency sends it from the URL "
            "http://token:<token>@host:port); without one, serve on a trusted "
            "network or behind a proxy that authenticates."
        ),
    )
    add_model_argument(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1; 0.0.0.0 for everyone on the network)",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    add_device_argument(parser)
    access = parser.add_argument_group("access")
    access.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help=f"file holding the token that /v1/* requests must send as 'Authorization: Bearer <token>' "
        f"(default: the environment variable {TOKEN_ENV}; none: no authentication)",
    )
    access.add_argument(
        "--token",
        default=None,
        help=f"the token itself (visible to other users in the process list: prefer {TOKEN_ENV} or --token-file)",
    )
    add_settings_options(parser, ServiceSettings)
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level: access lines and server messages on stderr (default: info)",
    )  # fmt: skip
    parser.set_defaults(func=run)


# -- options generated from the settings dataclass -------------------------------------------------
def _options(cls: type) -> list[tuple[dataclasses.Field, Any, dict[str, Any]]]:
    hints = typing.get_type_hints(cls)
    return [(field, hints[field.name], field.metadata.get("cli", {})) for field in dataclasses.fields(cls)]


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_settings_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per field of the dataclass ``cls`` (name, type, default and help from the field)."""
    defaults = cls()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field, tp, cli in _options(cls):
        group_name = cli.get("group") or "settings"
        group = groups.get(group_name) or groups.setdefault(group_name, parser.add_argument_group(group_name))
        flag = cli.get("flag") or "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        text = (field_help(field) or field.name).replace("%", "%%")
        if tp is bool:
            action = "store_true" if not default else argparse.BooleanOptionalAction
            group.add_argument(flag, dest=field.name, action=action, default=default, help=text)
            continue
        if tp == tuple[str, ...]:
            kind, shown = _comma_list, ",".join(default)
        elif cli.get("scale"):
            kind, shown = float, f"{default / cli['scale']:g} {cli.get('unit') or ''}".strip()
        else:
            kind, shown = tp, f"{default:g}" if isinstance(default, float) else str(default)
        metavar = _metavar(field.name, tp, cli)
        group.add_argument(flag, dest=field.name, type=kind, default=None, metavar=metavar, help=f"{text} (default: {shown})")


def _metavar(name: str, tp: Any, cli: dict[str, Any]) -> str:
    if cli.get("unit"):
        return cli["unit"].upper()
    if tp == tuple[str, ...]:
        return "A,B,..."
    return "SECONDS" if name.endswith("_s") else "MS" if name.endswith("_ms") else "N"


def settings_from_args(args: argparse.Namespace, cls: type = ServiceSettings) -> Any:
    """The dataclass ``cls`` from the options `add_settings_options` added (ConfigError if out of bounds)."""
    values = {}
    for field, tp, cli in _options(cls):
        value = getattr(args, field.name)
        if value is None:
            continue
        if cli.get("scale") and tp is not bool:
            value = value * cli["scale"]
            value = int(round(value)) if tp is int else value
        values[field.name] = value
    return cls(**values)


# -- the command -----------------------------------------------------------------------------------
def read_token(args: argparse.Namespace) -> str | None:
    """The token from --token, else --token-file, else the environment; None: no authentication."""
    if args.token is not None:
        return args.token
    if args.token_file is not None:
        try:
            return args.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read the token file {args.token_file} ({error}); check --token-file") from None
    return os.environ.get(TOKEN_ENV) or None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args: argparse.Namespace) -> int:
    from ..hub import load  # torch and the model: only when the command runs

    settings = settings_from_args(args)
    token = read_token(args)
    check_token(token)
    try:
        from ..service.app import create_app
        from ..service.server import bind_socket, socket_url, uvicorn_server
    except ImportError as error:
        raise DeepGazeError(
            f"deepgaze-hub serve needs the web stack ({error.name} is missing): pip install 'deepgaze-hub[serve]'"
        ) from None
    sock = bind_socket(args.host, args.port)  # before loading: a busy port fails fast
    try:
        device = resolve_device(args.device)
        print(f"loading model {args.model} on {device}", file=sys.stderr)
        model = load(args.model, revision=args.revision, map_location=device)
        app = create_app(model, settings, name=args.model, token=token)
        if token is None and not _is_loopback(args.host):
            print(
                f"deepgaze-hub serve: warning: no token, anyone who can reach {args.host} can use the service "
                f"(set {TOKEN_ENV} or --token-file)",
                file=sys.stderr,
            )
        print(
            f"deepgaze-hub serve: serving {args.model} at {socket_url(sock)}/ (Ctrl+C to stop)",
            file=sys.stderr,
            flush=True,
        )
        uvicorn_server(app, log_level=args.log_level).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl+C is how a service is stopped
        print("deepgaze-hub serve: stopped", file=sys.stderr)
    finally:
        sock.close()
    return 0
