"""Turning whatever image a user has into the model's input: a (3, H, W) float32 tensor in [0, 255].

Accepted inputs and the value rule:

* a file path (str or Path) or encoded bytes: any format Pillow reads, EXIF orientation applied;
* a ``PIL.Image`` in any mode: 1, L, LA, P, PA, RGB, RGBA, CMYK, YCbCr, I;16 (16-bit), I, F ...;
* a numpy array, channels last: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4);
* a torch tensor, channels first: (H, W), (1, H, W), (3, H, W) or (4, H, W).

Values: **integer data is taken at its type's full range** (uint8 0-255; uint16 and 16-bit images
0-65535; 32-bit integer images as 16-bit), **floating-point data must lie in [0, 1]**. Booleans
map to 0 / 255. Grayscale is replicated to three channels; an alpha channel is dropped (not
composited), as in the reference. Anything else raises `ImageError` naming the input.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DeepGazeError

ImageInput = Union[str, Path, bytes, Image.Image, np.ndarray, torch.Tensor]

#: File suffixes taken as images when a folder is searched.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageError(DeepGazeError, ValueError):
    """An input image that cannot be used; the message names the input and says why."""


def describe(source: Any, index: int | None = None) -> str:
    """A short name for an input in error messages: its path, or its type and position."""
    if isinstance(source, (str, Path)):
        return str(source)
    where = f"image #{index}" if index is not None else "image"
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return f"{where} ({type(source).__name__} {tuple(source.shape)}, {source.dtype})"
    return f"{where} ({type(source).__name__})"


def open_image(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Open and fully decode an image file (or encoded bytes), EXIF orientation applied."""
    name = name or describe(source)
    try:
        if isinstance(source, bytes):
            image = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"{name}: no such file")
            if path.stat().st_size == 0:
                raise ImageError(f"{name}: the file is empty")
            image = Image.open(path)
        image.load()
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as error:
        raise ImageError(f"{name}: refused, too many pixels ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, ImageError):
            raise
        raise ImageError(f"{name}: the image data is corrupt or truncated ({error})") from None
    return image


def load_image(source: ImageInput, name: str | None = None) -> torch.Tensor:
    """Convert one image to a (3, H, W) float32 tensor with values in [0, 255] (see module doc)."""
    name = name or describe(source)
    if isinstance(source, (str, Path, bytes)):
        source = open_image(source, name)
    if isinstance(source, Image.Image):
        array = _pil_to_array(source, name)
    elif isinstance(source, torch.Tensor):
        tensor = source.detach().cpu()
        if tensor.ndim == 3:
            tensor = tensor.permute(1, 2, 0)
        array = tensor.numpy()
    elif isinstance(source, np.ndarray):
        array = source
    else:
        raise ImageError(
            f"{name}: unsupported input type {type(source).__name__}; pass a path, bytes, a PIL "
            "image, a numpy array (H, W[, C]) or a tensor ([C,] H, W)"
        )
    return _array_to_tensor(array, name)


def _pil_to_array(image: Image.Image, name: str) -> np.ndarray:
    image = ImageOps.exif_transpose(image) or image
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        return np.clip(values, 0, 65535).astype(np.uint16)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    try:
        return np.asarray(image.convert("RGB"))
    except (ValueError, OSError) as error:
        raise ImageError(f"{name}: cannot convert image mode {image.mode!r} to RGB ({error})") from None


def _array_to_tensor(array: np.ndarray, name: str) -> torch.Tensor:
    array = np.asarray(array)
    if array.size == 0:
        raise ImageError(f"{name}: the image is empty (shape {array.shape})")
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        array = array[..., :3] if array.shape[-1] >= 3 else np.repeat(array, 3, axis=-1)
    elif array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    else:
        raise ImageError(
            f"{name}: cannot read shape {array.shape} as an image; expected (H, W) or (H, W, C) with "
            "C in 1, 3, 4 for arrays, (H, W) or (C, H, W) for tensors"
        )
    if array.dtype == np.bool_:
        values = array.astype(np.float32) * 255.0
    elif np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if array.min() < 0:
            raise ImageError(f"{name}: negative pixel values in an integer image")
        top = 255.0 if info.bits <= 8 else 65535.0
        if array.max() > top:
            raise ImageError(f"{name}: integer values above {top:.0f}; use uint8 (0-255) or uint16 (0-65535)")
        values = array.astype(np.float32) * np.float32(255.0 / top)
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ImageError(f"{name}: the image contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ImageError(
                f"{name}: float values must lie in [0, 1], found [{low:g}, {high:g}]; "
                "for 0-255 data pass uint8 or divide by 255"
            )
        values = values * np.float32(255.0)
    else:
        raise ImageError(f"{name}: unsupported pixel type {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(values)).permute(2, 0, 1).contiguous()


def find_images(paths: list[str | Path]) -> list[Path]:
    """Expand paths: files as given, folders searched recursively for image suffixes (sorted)."""
    found: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found.extend(
                sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            )
        else:
            found.append(entry)
    return found
