"""Image files as a dataset stores them: encoded bytes, their displayed size, and a content id.

The id of an image is a hash of its *pixels* (after decoding, EXIF orientation and conversion to
RGB, exactly as `deepgaze_hub.io.images.load_image` delivers them), not of the file bytes: the
same picture keeps its id when it is re-encoded losslessly, re-imported from another format or
listed in another order. Identical pictures share an id.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatasetError, ImageError
from ..io.images import load_image, open_image

#: Hex digits kept of the SHA-256 pixel hash (64 bits: collisions are negligible below 10^8 images).
ID_LENGTH = 16

_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def read_source(source: bytes | str | Path, where: str) -> bytes:
    """The encoded bytes of an image given as bytes or as a file path."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{where}: image file {path} does not exist") from None
    except OSError as error:
        raise DatasetError(f"{where}: cannot read image file {path} ({error})") from None


def displayed_size(source: bytes | str | Path, where: str) -> tuple[int, int]:
    """(H, W) of an image as displayed (EXIF orientation applied), from its header only."""
    try:
        handle = Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
    except FileNotFoundError:
        raise DatasetError(f"{where}: image file {source} does not exist") from None
    except Exception as error:  # noqa: BLE001, PIL raises many types for unreadable headers
        raise DatasetError(f"{where}: not an image Pillow can read ({error})") from None
    with handle:
        width, height = handle.size
        try:
            orientation = handle.getexif().get(0x0112)
        except Exception:  # noqa: BLE001, a broken EXIF block is ignored, as ImageOps.exif_transpose does
            orientation = None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return int(height), int(width)


def stored_size(data: bytes, where: str) -> tuple[int, int]:
    """(H, W) of encoded image bytes as stored, *before* EXIF orientation, from the header alone.

    Cheaper than `displayed_size` (PNG EXIF may follow the pixel data, so reading it decodes the
    image); a transposing orientation swaps the two.
    """
    try:
        with Image.open(io.BytesIO(data)) as handle:
            width, height = handle.size
    except Exception as error:  # noqa: BLE001, PIL raises many types for unreadable headers
        raise DatasetError(f"{where}: not an image Pillow can read ({error})") from None
    return int(height), int(width)


def decode(data: bytes, where: str) -> np.ndarray:
    """Decode encoded image bytes to the uint8 (H, W, 3) RGB pixels the model sees (rounded)."""
    try:
        pixels = load_image(open_image(data, where), where)  # (3, H, W) float32 in [0, 255]
    except ImageError as error:
        raise DatasetError(str(error)) from None
    return np.rint(pixels.permute(1, 2, 0).numpy()).astype(np.uint8)


def pixel_id(pixels: np.ndarray) -> str:
    """The content id of decoded (H, W, 3) uint8 pixels (see module docstring)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    digest = hashlib.sha256(f"{pixels.shape[0]}x{pixels.shape[1]}x{pixels.shape[2]};".encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()[:ID_LENGTH]


def encode_png(array: np.ndarray, where: str) -> bytes:
    """Losslessly encode an image array, (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), as PNG bytes.

    Integer arrays must hold values 0-255 (any integer type); others are refused.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))) or array.size == 0:
        raise DatasetError(f"{where}: cannot store an image array of shape {array.shape}; expected (H, W[, 1|3|4])")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
            raise DatasetError(
                f"{where}: image array of type {array.dtype} with values outside 0-255 integers; "
                "convert it to uint8 first"
            )
        array = array.astype(np.uint8)
    buffer = io.BytesIO()  # level 3: a third of the default's time for files ~9% larger
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
