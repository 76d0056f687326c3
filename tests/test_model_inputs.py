"""DeepGaze.predict and load_image: every kind of image in, clear errors for bad ones."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub import ImageError, load_image

from conftest import make_tiny_model

RGB = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    return make_tiny_model(num_members=2)


def _expected(model, rgb_uint8):
    tensor = torch.from_numpy(rgb_uint8.astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        return model(tensor)[0]


def test_modes_convert_to_the_same_rgb_values():
    image = Image.fromarray(RGB)
    reference = load_image(image)
    assert reference.shape == (3, 60, 80) and reference.dtype == torch.float32
    assert torch.equal(load_image(RGB), reference)
    assert torch.equal(load_image(torch.from_numpy(RGB).permute(2, 0, 1)), reference)
    assert torch.equal(load_image(image.convert("RGBA")), reference)  # alpha dropped
    np.testing.assert_allclose(load_image(RGB.astype(np.float32) / 255).numpy(), reference.numpy(), atol=1e-4)
    gray = load_image(image.convert("L"))
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert load_image(image.convert("P")).shape == (3, 60, 80)
    assert load_image(image.convert("CMYK")).shape == (3, 60, 80)
    assert load_image(image.convert("LA")).shape == (3, 60, 80)
    assert load_image(image.convert("1")).max() == 255


def test_sixteen_bit_images_use_their_full_range(tmp_path):
    values = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16).repeat(20, 0).repeat(20, 1)
    Image.fromarray(values).save(tmp_path / "deep.png")
    loaded = load_image(tmp_path / "deep.png")
    np.testing.assert_allclose(loaded[0].numpy(), values * 255.0 / 65535.0, rtol=1e-6)
    np.testing.assert_allclose(load_image(values)[1].numpy(), values * 255.0 / 65535.0, rtol=1e-6)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(RGB)  # 80 wide, 60 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").shape == (3, 80, 60)


def test_predict_list_of_different_sizes_and_kinds(model, tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    small = RGB[:40, :50]
    out = model.predict([tmp_path / "a.png", small, torch.from_numpy(RGB).permute(2, 0, 1), (tmp_path / "a.png").read_bytes()])
    assert [tuple(o.shape) for o in out] == [(60, 80), (40, 50), (60, 80), (60, 80)]
    expected = _expected(model, RGB)
    for o in (out[0], out[2], out[3]):
        torch.testing.assert_close(o, expected)
    torch.testing.assert_close(out[1], _expected(model, small))
    single = model.predict(RGB)
    assert single.shape == (60, 80) and single.device.type == "cpu"
    batch = model.predict(np.stack([RGB, RGB]))
    assert batch.shape == (2, 60, 80)


def test_predict_restores_training_mode(model):
    model.train()
    model.predict(RGB)
    assert model.training
    model.eval()


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((30, 30, 3), np.nan, dtype=np.float32), "NaN or infinite"),
        (np.zeros((0, 30, 3), dtype=np.uint8), "empty"),
        (np.full((30, 30, 3), 7.0), "must lie in \\[0, 1\\]"),
        (np.zeros((30, 30, 2), dtype=np.uint8), "cannot read shape"),
        (np.zeros((30, 30, 3), dtype=np.complex64), "unsupported pixel type"),
        ("no/such/file.png", "no such file"),
        (b"not an image at all", "not an image file"),
        (12345, "unsupported input type"),
    ],
)
def test_bad_inputs_say_which_and_why(model, bad, message):
    with pytest.raises(ImageError, match=message):
        model.predict(bad)


def test_the_failing_item_of_a_list_is_named(model):
    with pytest.raises(ImageError, match="image #1"):
        model.predict([RGB, np.full((30, 30), np.inf, dtype=np.float32)])


def test_empty_and_truncated_files(model, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png: the file is empty"):
        model.predict(tmp_path / "empty.png")
    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:200])
    with pytest.raises(ImageError, match="cut.png: the image data is corrupt or truncated"):
        model.predict(tmp_path / "cut.png")


def test_image_too_small_for_the_backbone_is_named(model):
    from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig

    squeeze = DeepGaze(DeepGazeConfig(backbone=BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.12"], channels=None)))
    with pytest.raises(ImageError, match="image #0 .*too small"):
        squeeze.predict(np.zeros((12, 12, 3), dtype=np.uint8))


def test_image_smaller_than_the_downsampling_is_named(model):
    with pytest.raises(ImageError, match="image #0 .*too small"):
        model.predict(np.zeros((1, 40, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate 1728000000 bytes"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError(),
    ],
)
def test_out_of_memory_in_the_backbone_is_not_called_too_small(model, tmp_path, monkeypatch, error):
    def exhausted(images):
        raise error

    monkeypatch.setattr(model.backbone, "forward", exhausted)
    Image.fromarray(RGB).save(tmp_path / "photo.png")
    with pytest.raises(ImageError, match=r"photo.png: out of memory running the backbone custom on an image of 80x60") as caught:
        model.predict(tmp_path / "photo.png")
    assert "too small" not in str(caught.value) and "max_pixels" in str(caught.value)
    with pytest.raises(ImageError, match=r"image #0 .*, image #1 .*: out of memory .* on 2 images of 80x60 .*batch_size"):
        model.predict([RGB, RGB])


def test_other_backbone_errors_are_not_disguised(model, monkeypatch):
    def broken(images):
        raise RuntimeError("Input type (double) and weight type (float) should be the same")

    monkeypatch.setattr(model.backbone, "forward", broken)
    with pytest.raises(RuntimeError, match="should be the same"):
        model.predict(RGB)


def test_a_one_pixel_file_is_named_and_called_too_small(model, tmp_path):
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    with pytest.raises(ImageError, match=r"^\S*dot.png: an image of 1x1 pixels \(width x height\) is too small"):
        model.predict(tmp_path / "dot.png")
