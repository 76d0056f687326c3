"""The pixel limit: images too large are refused from their header, before a pixel is decoded."""

from __future__ import annotations

import struct
import time
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from deepgaze_hub.errors import ImageError
from deepgaze_hub.io.images import DEFAULT_MAX_PIXELS, check_pixels, is_out_of_memory, load_image, open_image

from conftest import make_tiny_model


def write_solid_png(path, width: int, height: int) -> None:
    """A valid grey RGB PNG of width x height pixels that is small on disk (12000 x 12000: ~420 kB).

    The deflate stream of identical rows is built once for a block of rows and repeated (each
    block ends with a full flush, so blocks are independent), so writing costs a fraction of a
    second and no image is ever held in memory.
    """
    row = b"\x00" + b"\x80" * (3 * width)  # filter byte 0, then the pixels
    rows_per_block = 200
    block = row * rows_per_block
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    parts = [b"\x78\xda"]
    for _ in range(height // rows_per_block):
        parts.append(compressed)
        checksum = zlib.adler32(block, checksum)
    rest = row * (height % rows_per_block)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts.append(tail.compress(rest) + tail.flush())
    checksum = zlib.adler32(rest, checksum)
    parts.append(struct.pack(">I", checksum))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def test_the_solid_png_writer_writes_a_valid_png(tmp_path):
    write_solid_png(tmp_path / "small.png", 70, 450)
    pixels = np.asarray(Image.open(tmp_path / "small.png"))
    assert pixels.shape == (450, 70, 3) and (pixels == 128).all()


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    write_solid_png(path, 12000, 12000)  # 144 million pixels
    return path


def test_a_decompression_bomb_is_refused_from_its_header(huge_png, monkeypatch):
    assert huge_png.stat().st_size < 1_000_000

    def no_decoding(self):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and Pillow's DecompressionBombWarning is not shown
        for source in (huge_png, huge_png.read_bytes()):
            with pytest.raises(ImageError, match="refused, 12000x12000 = 144.0 million pixels .* limit of 40 million"):
                load_image(source, "huge.png")
        with pytest.raises(ImageError, match=r"^huge.png: refused"):
            open_image(huge_png, "huge.png")
        with pytest.raises(ImageError, match="limit of 1 million"):
            load_image(huge_png, "huge.png", max_pixels=1_000_000)
    assert time.perf_counter() - start < 5


def test_the_limit_applies_to_every_kind_of_input():
    array = np.zeros((100, 120, 3), dtype=np.uint8)
    for source in (array, torch.zeros(3, 100, 120), torch.zeros(100, 120), Image.fromarray(array)):
        with pytest.raises(ImageError, match="120x100 = 0.0 million pixels"):
            load_image(source, max_pixels=11_999)
        assert load_image(source, max_pixels=12_000).shape == (3, 100, 120)
        assert load_image(source, max_pixels=None).shape == (3, 100, 120)
    assert DEFAULT_MAX_PIXELS == 40_000_000
    check_pixels(6000, 6000, None, "x")  # None: no limit
    with pytest.raises(ImageError, match="^x: refused"):
        check_pixels(10, 10, 99, "x")


def test_predict_takes_the_limit_and_names_the_image(tmp_path):
    model = make_tiny_model()
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    with pytest.raises(ImageError, match=r"p.png: refused, 50x40"):
        model.predict(tmp_path / "p.png", max_pixels=1000)
    with pytest.raises(ImageError, match=r"image #1 .*refused"):
        model.predict([np.zeros((8, 8, 3), np.uint8), np.zeros((40, 50, 3), np.uint8)], max_pixels=1000)
    assert model.predict(tmp_path / "p.png", max_pixels=2000).shape == (40, 50)


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"))
    assert not is_out_of_memory(RuntimeError("Kernel size can't be greater than actual input size"))
    assert not is_out_of_memory(ValueError("out of memory"))
