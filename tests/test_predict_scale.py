"""Prediction at the model's working resolution, reduced precision and channels-last."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub.cli import main
from deepgaze_hub.errors import ConfigError, ImageError
from deepgaze_hub.io.scale import resize_image, resize_log_density
from deepgaze_hub.model import DeepGaze
from deepgaze_hub.model.config import BackboneConfig, DeepGazeConfig, TrainingScale

from conftest import make_tiny_model, random_images


def small_scale_model(**overrides) -> DeepGaze:
    """The tiny model, told it was trained on images of 128 pixels on the long side at 35 ppd."""
    return make_tiny_model(training_scale=TrainingScale(pixels_per_degree=35.0, long_side=128), **overrides)


def saved_model(directory) -> DeepGaze:
    """A reloadable model (random SqueezeNet) with a working size of 128 pixels, saved in ``directory``."""
    backbone = BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None)
    torch.manual_seed(0)
    model = DeepGaze(DeepGazeConfig(backbone=backbone, training_scale=TrainingScale(long_side=128))).eval()
    model.save_pretrained(directory)
    return model


def test_images_at_or_below_the_working_size_are_predicted_exactly_as_before():
    model = small_scale_model()
    for rows, cols in ((96, 128), (64, 80), (128, 128)):
        image = random_images(1, rows, cols, seed=1)
        with torch.no_grad():
            expected = model(image)[0]
        assert torch.equal(model.predict(image[0] / 255), expected)


def test_larger_images_are_shrunk_and_the_density_comes_back_at_their_size():
    model = small_scale_model()
    image = random_images(1, 240, 320, seed=2)[0]
    out = model.predict(image / 255)
    assert out.shape == (240, 320)
    torch.testing.assert_close(out.double().exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-5, rtol=0)
    with torch.no_grad():
        working = model(resize_image(image, (96, 128))[None])[0]
    torch.testing.assert_close(out, resize_log_density(working, (240, 320)))
    assert model.scaling((240, 320)).working == (96, 128)
    with torch.no_grad():
        full = model(image[None])[0]
    assert torch.equal(model.predict(image / 255, full_size=True), full)
    # a list keeps each image at its own size; a centre bias is given at the image's size
    both = model.predict([image / 255, image[:, :80, :100] / 255], centerbias=[torch.zeros(240, 320), torch.zeros(80, 100)])
    assert [tuple(o.shape) for o in both] == [(240, 320), (80, 100)]
    with pytest.raises(ValueError, match="the image's size"):
        model.predict(image / 255, centerbias=torch.zeros(96, 128))


def test_pixels_per_degree_rescales_to_the_training_scale():
    model = small_scale_model()
    image = random_images(1, 60, 80, seed=3)[0] / 255
    assert model.scaling((60, 80), pixels_per_degree=17.5).working == (120, 160)  # upscaled 2x
    out = model.predict(image, pixels_per_degree=17.5)
    with torch.no_grad():
        working = model(resize_image(image * 255, (120, 160))[None])[0]
    torch.testing.assert_close(out, resize_log_density(working, (60, 80)))
    unknown = make_tiny_model(training_scale=None)
    assert unknown.scaling((3000, 4000)).working == (3000, 4000)
    with pytest.raises(ImageError, match="does not record the pixels per degree"):
        unknown.predict(image, pixels_per_degree=30)


def test_configs_without_a_training_scale_load_as_deepgaze2():
    data = DeepGazeConfig().to_dict()
    del data["training_scale"]
    data["format_version"] = 1
    config = DeepGazeConfig.from_dict(data, "old.json")
    assert config.training_scale == TrainingScale(pixels_per_degree=35.0, long_side=1024)
    data["training_scale"] = {"long_side": 0}
    with pytest.raises(ConfigError, match="old.json: training_scale.long_side"):
        DeepGazeConfig.from_dict(data, "old.json")


def test_channels_last_is_the_default_and_can_be_switched_off(monkeypatch):
    conv = next(m for m in make_tiny_model().backbone.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.shape[-1] > 1
    monkeypatch.setenv("DEEPGAZE_HUB_CHANNELS_LAST", "0")
    model = make_tiny_model()
    assert not model.backbone.channels_last
    conv = next(m for m in model.backbone.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_and_reduced_precision():
    model = make_tiny_model()
    images = random_images(2, 64, 96, seed=4)
    assert model.backbone.channels_last
    with torch.no_grad():
        fast = model(images)
        model.backbone.channels_last = False
        plain = model(images)
        model.backbone.channels_last = True
        assert model.precision == "float32"
        model.precision = "bfloat16"
        try:
            reduced = model(images)
        finally:
            model.precision = "float32"
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=2e-5)
    assert reduced.dtype == torch.float32 and not torch.equal(reduced, plain)
    torch.testing.assert_close(reduced, plain, rtol=0, atol=0.05)
    with pytest.raises(ConfigError, match="precision must be one of"):
        model.precision = "int8"


def test_predict_cli_scales_batches_and_keeps_the_input_size(tmp_path, capsys):
    model_dir = tmp_path / "model"
    saved_model(model_dir)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in "abcde":
        Image.fromarray((rng.random((150, 200, 3)) * 255).astype(np.uint8)).save(photos / f"{name}.png")
    out = tmp_path / "out"
    args = ["predict", str(photos), "--model", str(model_dir), "--out", str(out), "--format", "npy"]
    assert main([*args, "--batch-size", "4", "--workers", "2"]) == 0
    loaded = DeepGaze.from_pretrained(model_dir)
    for name in "abcde":
        written = np.load(out / "photos" / f"{name}.npy")
        assert written.shape == (150, 200)
        np.testing.assert_allclose(written, loaded.predict(photos / f"{name}.png").numpy(), rtol=1e-5, atol=1e-4)
    full = tmp_path / "full"
    assert main(["predict", str(photos / "a.png"), "--model", str(model_dir), "--out", str(full), "--full-size"]) == 0
    np.testing.assert_allclose(
        np.load(full / "a.npy"), loaded.predict(photos / "a.png", full_size=True).numpy(), rtol=1e-5, atol=1e-4
    )
    ppd = tmp_path / "ppd"
    assert main(["predict", str(photos / "a.png"), "--model", str(model_dir), "--out", str(ppd),
                 "--screen", "1920", "53", "60", "--format", "npy"]) == 0  # fmt: skip
    expected = loaded.predict(photos / "a.png", pixels_per_degree=1920 / 53 * 2 * 60 * np.tan(np.radians(0.5)))
    np.testing.assert_allclose(np.load(ppd / "a.npy"), expected.numpy(), rtol=1e-5, atol=1e-4)
    assert main([*args, "--pixels-per-degree", "0"]) == 2
    assert main([*args, "--full-size", "--pixels-per-degree", "30"]) == 2
    assert main([*args, "--batch-size", "0"]) == 2
    capsys.readouterr()


def test_predict_cli_batches_same_size_images_and_decodes_in_other_threads(tmp_path, monkeypatch):
    import threading

    from deepgaze_hub.cli import _predict_run as predict_cli

    model_dir = tmp_path / "model"
    saved_model(model_dir)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(7):
        Image.fromarray(np.full((60, 80, 3), 20 * i, np.uint8)).save(photos / f"{i}.png")
    batches, threads = [], set()
    real_run, real_prepare = predict_cli.FolderPredictor._run_model, predict_cli.FolderPredictor._prepare

    def run_model(self, batch):
        batches.append(len(batch))
        return real_run(self, batch)

    def prepare(self, *job):
        threads.add(threading.current_thread().name)
        return real_prepare(self, *job)

    monkeypatch.setattr(predict_cli.FolderPredictor, "_run_model", run_model)
    monkeypatch.setattr(predict_cli.FolderPredictor, "_prepare", prepare)
    out = tmp_path / "out"
    assert main(["predict", str(photos), "--model", str(model_dir), "--out", str(out), "--batch-size", "3"]) == 0
    assert batches == [3, 3, 1]
    assert threads and all(name.startswith("decode") for name in threads)
    assert len(list((out / "photos").glob("*.png"))) == 7
