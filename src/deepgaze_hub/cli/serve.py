"""``deepgaze-hub serve``: the prediction web service (JSON API and web page) for one model."""

from __future__ import annotations

import argparse
import sys

import torch

from ..errors import DeepGazeError
from ..service.settings import ServiceSettings

MIB = 2**20


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = ServiceSettings()
    parser = subparsers.add_parser(
        "serve",
        help="serve predictions over HTTP: a JSON API and a web page",
        description=(
            "Load a model and serve it: a web page at / (upload an image, see its density overlay, "
            "download the results) and a JSON API (POST /v1/predict with the image file as the body, "
            "GET /v1/models, GET /healthz, GET /openapi.json). Concurrent requests are batched on the "
            "model. Every limit below refuses a request with a 4xx JSON error and the service goes on. "
            "There is no authentication: serve on a trusted network or behind a proxy that adds it."
        ),
    )
    parser.add_argument(
        "--model",
        required=True,
        help="registry name (deepgaze-hub list), model directory (save_pretrained) or Hub repo id",
    )
    parser.add_argument("--revision", default=None, help="Hub revision (commit hash) when --model is a repo id")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1; 0.0.0.0 for everyone on the network)",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device of the model (default: cuda when available, else cpu)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-upload-mb",
        type=float,
        default=defaults.max_upload_bytes / MIB,
        help="largest upload in MiB (default: %(default)g)",
    )
    limits.add_argument(
        "--max-pixels",
        type=int,
        default=defaults.max_pixels,
        help="largest image, width x height (default: %(default)d)",
    )
    limits.add_argument(
        "--formats",
        default=",".join(defaults.image_formats),
        help="accepted image formats, Pillow names (default: %(default)s)",
    )
    limits.add_argument(
        "--timeout",
        type=float,
        default=defaults.request_timeout_s,
        help="per-request time limit in seconds (default: %(default)g)",
    )
    limits.add_argument(
        "--max-queue",
        type=int,
        default=defaults.max_queue,
        help="requests served at once; more get 429 (default: %(default)d)",
    )
    limits.add_argument(
        "--max-fixations",
        type=int,
        default=defaults.max_fixations,
        help="most fixations one request may sample (default: %(default)d)",
    )
    limits.add_argument(
        "--result-cache-mb",
        type=float,
        default=defaults.result_cache_bytes / MIB,
        help="recent results kept for redraws and downloads, MiB (default: %(default)g)",
    )
    batching = parser.add_argument_group("batching")
    batching.add_argument(
        "--max-batch",
        type=int,
        default=defaults.max_batch,
        help="images per forward pass; 1 turns batching off (default: %(default)d)",
    )
    batching.add_argument(
        "--batch-wait-ms",
        type=float,
        default=defaults.batch_wait_ms,
        help="how long a request waits for others to share its batch (default: %(default)g)",
    )
    batching.add_argument(
        "--max-batch-pixels",
        type=int,
        default=defaults.max_batch_pixels,
        help="pixels per forward pass in all (default: %(default)d)",
    )
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    return ServiceSettings(
        max_upload_bytes=int(args.max_upload_mb * MIB),
        max_pixels=args.max_pixels,
        image_formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
        request_timeout_s=args.timeout,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        max_batch_pixels=args.max_batch_pixels,
        max_queue=args.max_queue,
        max_fixations=args.max_fixations,
        result_cache_bytes=int(args.result_cache_mb * MIB),
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    try:
        from ..service.app import create_app
        from ..service.server import bind_socket, socket_url, uvicorn_server
    except ImportError as error:
        raise DeepGazeError(
            f"deepgaze-hub serve needs the web stack ({error.name} is missing): pip install 'deepgaze-hub[serve]'"
        ) from None
    from ..hub.resolve import load_any

    sock = bind_socket(args.host, args.port)  # before loading: a busy port fails fast
    try:
        print(f"loading model {args.model} on {args.device}", file=sys.stderr)
        model = load_any(args.model, revision=args.revision, map_location=args.device)
        app = create_app(model, settings, name=args.model)
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
