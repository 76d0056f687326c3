"""The service's limits and batching settings, as one checked dataclass.

Every field is declared with `deepgaze_hub.io.typed.bounded`: its type and bounds are checked
when the settings are built (`ServiceSettings(...)` raises `ConfigError` naming the field), and
its ``help`` text, ``flag`` name and ``scale`` (metadata) generate the ``deepgaze-hub serve``
options (cli/serve.py), so that a setting is described once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..errors import ConfigError
from ..io.typed import bounded, to_dict, validate

MIB = 2**20

#: Image formats the service decodes by default, as Pillow names them (detected from the bytes).
DEFAULT_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

#: Pillow formats never decoded from uploads: EPS runs Ghostscript (an interpreter) on the bytes.
_NOT_FOR_UPLOADS = frozenset({"EPS"})


def _cli(group: str, flag: str | None = None, scale: float | None = None, unit: str | None = None) -> dict[str, Any]:
    """Field metadata for the generated command-line option: its group, another name, a unit.

    ``scale``: the option is given in ``unit`` (e.g. MiB), the field holds ``value * scale``.
    """
    return {"metadata": {"cli": {"group": group, "flag": flag, "scale": scale, "unit": unit}}}


def normalise_formats(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Pillow's names of the decoders ``names`` asks for (case-insensitive; JPG -> JPEG, TIF -> TIFF).

    A file extension known to Pillow is accepted for its format. Raises `ConfigError` naming
    the unknown names and the available ones.
    """
    Image.init()
    extensions = Image.registered_extensions()  # ".jpg" -> "JPEG"
    known, unknown = [], []
    for name in names:
        upper = name.strip().upper()
        resolved = upper if upper in Image.OPEN else extensions.get("." + upper.lower())
        if resolved is None or resolved not in Image.OPEN or resolved in _NOT_FOR_UPLOADS:
            unknown.append(name)
        elif resolved not in known:
            known.append(resolved)
    if unknown:
        raise ConfigError(
            f"service settings: image_formats: unknown image format{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n) for n in unknown)}; use Pillow's names, e.g. {', '.join(DEFAULT_IMAGE_FORMATS)} "
            f"(all: {', '.join(sorted(set(Image.OPEN) - _NOT_FOR_UPLOADS))})"
        )
    return tuple(known)


def check_token(token: str | None) -> None:
    """Refuse a token that cannot travel in an ``Authorization: Bearer`` header (`ConfigError`)."""
    if token is None:
        return
    if not token or not all(33 <= ord(c) <= 126 for c in token):
        raise ConfigError(
            "the service token must be non-empty printable ASCII without spaces "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


@dataclass(frozen=True)
class ServiceSettings:
    """What the prediction service accepts, how long it waits and how it batches (see each field's help)."""

    max_upload_bytes: int = bounded(
        64 * MIB,
        ge=1,
        help="largest request body (the encoded image; a 50-megapixel camera JPEG is 15-40 MiB)",
        **_cli("limits", "--max-upload-mb", MIB, "MiB"),
    )
    max_pixels: int = bounded(
        50_000_000,
        ge=1,
        help="largest image decoded, width x height, checked from the image header before anything is "
        "decoded; a limit on memory (about 16 bytes per pixel while decoding), not on the model, which "
        "works at its own working size",
        **_cli("limits"),
    )
    max_decodes: int = bounded(
        2, ge=1, help="uploads decoded at full size at once (each needs up to max_pixels x 16 bytes); "
        "decoded images are shrunk to the model's working size before they are queued",
        **_cli("limits"),
    )
    max_working_pixels: int = bounded(
        4 * MIB, ge=1, help="largest size the model runs at, width x height, after scaling (--full-size, "
        "pixels_per_degree); larger gets 422",
        **_cli("limits"),
    )
    full_size: bool = bounded(
        False, help="predict images at their own size instead of shrinking larger ones to the model's working "
        "size (up to max_working_pixels)",
        **_cli("scale"),
    )
    precision: str = bounded(
        "float32", choices=("float32", "bfloat16", "float16"),
        help="precision of the backbone: float32 (exact), bfloat16 (fast on GPUs and CPUs with AMX/AVX512-BF16), "
        "float16 (GPU)",
        **_cli("batching"),
    )
    image_formats: tuple[str, ...] = bounded(
        DEFAULT_IMAGE_FORMATS,
        min_len=1,
        help="accepted image formats, Pillow names, comma-separated (JPG and TIF work too); "
        "detected from the content, never from a file name or Content-Type",
        **_cli("limits", "--formats"),
    )
    request_timeout_s: float = bounded(
        60.0,
        gt=0,
        help="a predict request still unanswered after this many seconds (upload, queue, model, encoding) gets 408",
        **_cli("limits", "--timeout"),
    )
    upload_timeout_s: float = bounded(
        30.0, gt=0, help="seconds an upload may take from its headers to its last byte; slower ones get 408",
        **_cli("limits"),
    )
    header_timeout_s: float = bounded(
        10.0, gt=0, help="seconds a connection may take to send a request's headers before it is closed",
        **_cli("limits"),
    )
    max_uploads: int = bounded(
        64, ge=1, help="uploads received at once, all clients together; more get 429 (bounds upload memory)",
        **_cli("limits"),
    )
    max_uploads_per_client: int = bounded(
        8, ge=1, help="uploads received at once from one client address; more get 429 "
        "(behind a proxy every client has the proxy's address)",
        **_cli("limits"),
    )
    max_queue: int = bounded(
        32, ge=1, help="fully received predict requests served at once (queued, in the model, encoding); more get 429",
        **_cli("limits"),
    )
    max_fixations: int = bounded(1000, ge=0, help="most fixations one request may sample", **_cli("limits"))
    max_history: int = bounded(
        10_000, ge=0, help="most previous fixations (x_hist, y_hist, t_hist) one /conditional_log_density request "
        "may send; a static model ignores them",
        **_cli("limits"),
    )
    result_cache_bytes: int = bounded(
        256 * MIB,
        ge=0,
        help="recent results kept (7 bytes per pixel) for overlay redraws and downloads",
        **_cli("limits", "--result-cache-mb", MIB, "MiB"),
    )
    max_batch: int = bounded(8, ge=1, help="images per forward pass; 1 turns batching off", **_cli("batching"))
    batch_wait_ms: float = bounded(
        5.0, ge=0, help="how long the first request of a batch waits for others to join it, ms", **_cli("batching")
    )
    max_batch_pixels: int = bounded(
        4 * MIB, ge=1, help="pixels per forward pass in all (a larger image still runs, alone)", **_cli("batching")
    )
    show_model_path: bool = bounded(
        False, help="show the model's local directory in /v1/models (default: only its last component)",
        **_cli("privacy"),
    )

    def __post_init__(self) -> None:
        validate(self, "service settings")
        object.__setattr__(self, "image_formats", normalise_formats(self.image_formats))

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON data (formats as a list)."""
        return to_dict(self)
