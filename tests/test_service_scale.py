"""The service takes phone-sized photos: decoded up to a memory limit, predicted at the working size."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub.model import DeepGaze
from deepgaze_hub.model.config import BackboneConfig, DeepGazeConfig, TrainingScale
from deepgaze_hub.service import BackgroundServer, ServiceSettings, create_app

from test_service_api import call, decode_npy, payload_density, post_image


@pytest.fixture(scope="module")
def model() -> DeepGaze:
    """A random SqueezeNet model whose working size is 160 pixels on the long side, at 35 ppd."""
    backbone = BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None)
    torch.manual_seed(0)
    return DeepGaze(DeepGazeConfig(backbone=backbone, training_scale=TrainingScale(long_side=160))).eval()


def photo(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def test_default_limits_take_phone_photos():
    settings = ServiceSettings()
    assert settings.max_pixels >= 50_000_000 > 4000 * 3000 and settings.max_upload_bytes >= 40 * 2**20


def test_a_large_photo_is_predicted_at_the_working_size_and_answered_at_its_own(model):
    settings = ServiceSettings(max_pixels=2_000_000, max_working_pixels=200_000)
    data = photo(800, 600)
    with BackgroundServer(create_app(model, settings, name="tiny")) as url:
        body = post_image(url, data, "fixations=20&seed=1").json()
        assert (body["width"], body["height"]) == (800, 600)
        scaling = body["scaling"]
        assert scaling["original_size"] == [800, 600] and scaling["working_size"] == [160, 120]
        assert "800x600 predicted at 160x120" in scaling["text"] and "working size" in scaling["reason"]
        density = payload_density(body)
        assert density.shape == (600, 800) and abs(np.exp(density.astype(np.float64)).sum() - 1) < 1e-4
        np.testing.assert_allclose(density, model.predict(data).numpy(), rtol=0, atol=2e-4)
        assert max(body["fixations"]["x"]) < 800 and max(body["fixations"]["y"]) < 600
        assert max(body["fixations"]["x"]) > 160  # in the photo's pixels, not the working size's
        overlay = Image.open(io.BytesIO(call(url, "GET", f"/v1/predictions/{body['id']}/overlay.png").body))
        assert overlay.size == (160, 120)  # overlays are drawn at the working size
        stored = decode_npy(call(url, "GET", f"/v1/predictions/{body['id']}/log_density.npy").body)
        assert np.array_equal(stored, density)
        small = post_image(url, photo(120, 90), "log_density=false&overlay=false").json()["scaling"]
        assert small["working_size"] == [120, 90] and small["reason"] == "as is"


def test_viewing_geometry_and_the_models_memory_limit(model):
    settings = ServiceSettings(max_pixels=2_000_000, max_working_pixels=100_000)
    with BackgroundServer(create_app(model, settings, name="tiny")) as url:
        half = post_image(url, photo(200, 150), "pixels_per_degree=70&log_density=false").json()
        assert half["scaling"]["working_size"] == [100, 75] and "35 pixels per degree" in half["scaling"]["reason"]
        refused = post_image(url, photo(200, 150), "pixels_per_degree=5")  # 7x upscaled: 1.47 Mpx
        assert refused.status == 422 and refused.error_code() == "too_large_to_predict"
        assert post_image(url, photo(200, 150), "pixels_per_degree=0").status == 422
        assert post_image(url, photo(2000, 1500)).status == 413  # 3 Mpx: over the decode limit
    full = ServiceSettings(max_pixels=2_000_000, max_working_pixels=100_000, full_size=True)
    with BackgroundServer(create_app(model, full, name="tiny")) as url:
        body = post_image(url, photo(200, 150), "log_density=false").json()
        assert body["scaling"]["working_size"] == [200, 150] and "full size" in body["scaling"]["reason"]
