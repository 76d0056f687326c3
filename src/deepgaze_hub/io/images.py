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
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

ImageInput = Union[str, Path, bytes, Image.Image, np.ndarray, torch.Tensor]

#: File suffixes taken as images when a folder is searched.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")

#: The largest image (width x height, in pixels) read by default: 40 million pixels. That is more
#: than any common camera or an 8K UHD frame (33 Mpx), so real photographs pass at full size, while
#: a decompression bomb (a small file declaring a huge image) is refused from its header before a
#: single pixel is decoded. The model was trained on images of about 1024 pixels on the long side
#: (~1 Mpx); at 40 Mpx the VGG-19 backbone already needs several GB. ``None`` disables the check.
DEFAULT_MAX_PIXELS = 40_000_000

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

_OUT_OF_MEMORY_MARKERS = ("out of memory", "not enough memory", "can't allocate memory", "defaultcpuallocator")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure: Python's MemoryError, ``torch.OutOfMemoryError``
    (CUDA) or a RuntimeError from an allocator (CPU "DefaultCPUAllocator: can't allocate memory",
    MPS "out of memory")."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _OUT_OF_MEMORY_MARKERS)


def check_pixels(width: int, height: int, max_pixels: int | None, name: str) -> None:
    """Raise `ImageError` naming the image if width x height exceeds ``max_pixels`` (None: no limit).

    Call it with the size read from the image header (``PIL.Image.open(...).size``, which decodes
    nothing) to refuse an image before its pixels cost any memory.
    """
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{name}: refused, {width}x{height} = {width * height / 1e6:.1f} million pixels is more than "
            f"the limit of {max_pixels / 1e6:g} million (max_pixels={max_pixels}); downscale the image, "
            "or raise max_pixels (--max-pixels on the command line) if the memory is there"
        )


def describe(source: Any, index: int | None = None) -> str:
    """A short name for an input in error messages: its path, or its type and position.

    A PIL image opened from a file is named by that file.
    """
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, Image.Image) and getattr(source, "filename", None):
        return str(source.filename)
    where = f"image #{index}" if index is not None else "image"
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return f"{where} ({type(source).__name__} {tuple(source.shape)}, {source.dtype})"
    return f"{where} ({type(source).__name__})"


def open_image(
    source: str | Path | bytes, name: str | None = None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open and fully decode an image file (or encoded bytes).

    The pixel count is checked from the header (`check_pixels`) before anything is decoded;
    EXIF orientation is applied later, by `load_image`. Every failure raises `ImageError` naming
    the file: missing, empty, not an image, corrupt, too many pixels, out of memory.
    """
    name = name or describe(source)
    try:
        if isinstance(source, bytes):
            handle: Any = io.BytesIO(source)
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"{name}: no such file" if not path.exists() else f"{name}: not a file")
            if path.stat().st_size == 0:
                raise ImageError(f"{name}: the file is empty")
            handle = path
        with warnings.catch_warnings():
            if max_pixels is not None:  # our own limit, checked next, replaces Pillow's warning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(handle)
        try:
            check_pixels(*image.size, max_pixels, name)
            image.load()
        except BaseException:
            image.close()  # the file Pillow holds open until the pixels are read
            raise
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as error:
        raise ImageError(f"{name}: refused, too many pixels ({error})") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied, the file cannot be read") from None
    except MemoryError:
        raise ImageError(f"{name}: out of memory decoding the image; downscale it or lower --max-pixels") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{name}: the image data is corrupt or truncated ({error})") from None
    return image


def load_image(
    source: ImageInput, name: str | None = None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """Convert one image to a (3, H, W) float32 tensor with values in [0, 255] (see module doc).

    ``max_pixels``: the largest H x W accepted (default `DEFAULT_MAX_PIXELS`, None: no limit),
    checked before any pixel is decoded or converted: from the header for files and bytes.
    Raises `ImageError` naming the input (``name``, default: `describe`) for anything unusable.
    """
    name = name or describe(source)
    if isinstance(source, (str, Path, bytes)):
        source = open_image(source, name, max_pixels=max_pixels)
    try:
        if isinstance(source, Image.Image):
            check_pixels(*source.size, max_pixels, name)
            array = image_array(source, name)
        elif isinstance(source, (torch.Tensor, np.ndarray)):
            if source.ndim >= 2:  # tensors ([C,] H, W), arrays (H, W[, C])
                rows, cols = source.shape[-2:] if isinstance(source, torch.Tensor) else source.shape[:2]
                check_pixels(int(cols), int(rows), max_pixels, name)
            if isinstance(source, torch.Tensor):
                tensor = source.detach().cpu()
                if tensor.ndim == 3:
                    tensor = tensor.permute(1, 2, 0)
                array = tensor.numpy()
            else:
                array = source
        else:
            raise ImageError(
                f"{name}: unsupported input type {type(source).__name__}; pass a path, bytes, a PIL "
                "image, a numpy array (H, W[, C]) or a tensor ([C,] H, W)"
            )
        return _array_to_tensor(array, name)
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        raise ImageError(
            f"{name}: out of memory converting the image to float32 pixels; downscale it or lower the "
            "pixel limit (--max-pixels / max_pixels=)"
        ) from None


def image_array(image: Image.Image, name: str | None = None) -> np.ndarray:
    """The pixels of a PIL image, EXIF orientation applied, as `load_image` reads them.

    (H, W, 3) uint8 for every 8-bit mode (grayscale replicated, alpha dropped, palettes expanded),
    (H, W) uint16 for 16-bit and 32-bit integer images, (H, W) float32 for mode F (as stored).
    ``load_image(image_array(image))`` equals ``load_image(image)``; the 8-bit array is also the
    picture an overlay is drawn on. Raises `ImageError` naming the image if it cannot be converted.
    """
    name = name or describe(image)
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
        array = array[..., :3]
    elif array.ndim == 2:
        array = array[..., None]
    else:
        raise ImageError(
            f"{name}: cannot read shape {array.shape} as an image; expected (H, W) or (H, W, C) with "
            "C in 1, 3, 4 for arrays, (H, W) or (C, H, W) for tensors"
        )
    if array.dtype == np.bool_:
        scale = 255.0
    elif np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min < 0 and array.min() < 0:
            raise ImageError(f"{name}: negative pixel values in an integer image")
        top = 255.0 if info.bits <= 8 else 65535.0
        if info.max > top and array.max() > top:
            raise ImageError(f"{name}: integer values above {top:.0f}; use uint8 (0-255) or uint16 (0-65535)")
        scale = 255.0 / top
    elif np.issubdtype(array.dtype, np.floating):
        scale = 255.0
    else:
        raise ImageError(f"{name}: unsupported pixel type {array.dtype}")
    # (3, H, W) float32 in one pass: converted and made channels-first (grayscale broadcast) at once
    values = np.empty((3, *array.shape[:2]), dtype=np.float32)
    np.copyto(values, np.moveaxis(array, -1, 0), casting="unsafe")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(values).all():
            raise ImageError(f"{name}: the image contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ImageError(
                f"{name}: float values must lie in [0, 1], found [{low:g}, {high:g}]; "
                "for 0-255 data pass uint8 or divide by 255"
            )
    if scale != 1.0:
        values *= np.float32(scale)
    return torch.from_numpy(values)


def find_images(
    paths: Iterable[str | Path],
    *,
    exclude: Iterable[str | Path] = (),
    on_error: Callable[[str], None] | None = None,
) -> list[Path]:
    """Expand paths: files as given, folders searched recursively for image suffixes (sorted).

    ``exclude``: folders never searched (compared resolved, e.g. an output folder inside an input
    folder). Symbolic links to folders are not followed. A folder that cannot be listed is
    reported to ``on_error`` (a message naming it) and skipped; without ``on_error`` it raises
    `ImageError`.
    """
    excluded = {Path(e).expanduser().resolve() for e in exclude}

    def report(message: str) -> None:
        if on_error is None:
            raise ImageError(message)
        on_error(message)

    found: list[Path] = []
    for entry in map(Path, paths):
        if not entry.is_dir():
            found.append(entry)
            continue
        if _inside(entry.resolve(), excluded):
            continue
        images: list[Path] = []
        walk_error = lambda error: report(f"{error.filename}: cannot list the folder ({error.strerror})")  # noqa: E731
        for folder, subfolders, files in os.walk(entry, onerror=walk_error):
            subfolders[:] = [d for d in subfolders if not _inside(Path(folder, d).resolve(), excluded)]
            images.extend(Path(folder, f) for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES)
        found.extend(sorted(p for p in images if p.is_file()))
    return found


def _inside(path: Path, folders: set[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)
