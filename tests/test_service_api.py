"""The prediction service over real HTTP on 127.0.0.1: API, outputs, limits, batching, CLI."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig, load_image
from deepgaze_hub.cli import main as cli_main
from deepgaze_hub.hub import load as load_model
from deepgaze_hub.data.sampling import sample_fixations
from deepgaze_hub.service import BackgroundServer, ServiceSettings, create_app
from deepgaze_hub.visualization import density_overlay

SETTINGS = ServiceSettings(
    max_upload_bytes=300_000,
    max_pixels=1_000_000,
    max_batch=4,
    batch_wait_ms=100,
    max_fixations=50,
    max_uploads_per_client=12,  # the concurrency test uploads 12 images at once from 127.0.0.1
)


# -- fixtures ----------------------------------------------------------------------------------
def save_test_model(directory: Path) -> Path:
    """The small reloadable model, its readout scaled so that densities depend on the image."""
    backbone = BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None)
    torch.manual_seed(0)
    model = DeepGaze(DeepGazeConfig(backbone=backbone, num_members=2))
    with torch.no_grad():
        for name, parameter in model.readout.named_parameters():
            if name.endswith("weight"):
                parameter.mul_(4.0)
        model.finalizer.centerbias_weight.zero_()
        model.finalizer.sigma.fill_(2.0)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_test_model(tmp_path_factory.mktemp("service-model"))


@pytest.fixture(scope="module")
def model(model_dir) -> DeepGaze:
    return load_model(str(model_dir))


@pytest.fixture(scope="module")
def service(model):
    with BackgroundServer(create_app(model, SETTINGS, name="tiny")) as url:
        yield url


# -- HTTP --------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return json.loads(self.body)

    def error_code(self) -> str:
        error = self.json()["error"]
        assert error["status"] == self.status and error["message"], error
        return error["code"]


def call(url: str, method: str, path: str, body=None, headers: dict | None = None) -> Reply:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def post_image(url: str, data: bytes, query: str = "", headers: dict | None = None) -> Reply:
    return call(url, "POST", f"/v1/predict{'?' + query if query else ''}", data, headers)


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def payload_density(body: dict) -> np.ndarray:
    payload = body["log_density"]
    assert (payload["encoding"], payload["dtype"], payload["units"]) == ("npy+base64", "float32", "nats")
    array = decode_npy(base64.b64decode(payload["data"]))
    assert list(array.shape) == payload["shape"] == [body["height"], body["width"]]
    return array


def assert_matches_direct_prediction(model: DeepGaze, data: bytes, log_density: np.ndarray) -> None:
    expected = model.predict(data).numpy()
    assert log_density.dtype == np.float32 and log_density.shape == expected.shape
    np.testing.assert_allclose(log_density, expected, rtol=0, atol=2e-4)  # batching noise ~3e-5
    assert abs(np.exp(log_density.astype(np.float64)).sum() - 1.0) < 1e-4


# -- images ------------------------------------------------------------------------------------
def random_image(mode: str, size=(80, 64), seed: int = 0) -> Image.Image:
    """A random image of ``mode``, ``size`` = (width, height)."""
    rng = np.random.default_rng(seed)
    width, height = size
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    rgb[: height // 2, : width // 2] = 255  # structure, so that densities differ between images
    if mode == "1":
        return Image.fromarray(rgb[..., 0] > 127)
    if mode in ("L", "P"):
        picture = Image.fromarray(rgb)
        return picture.convert("L") if mode == "L" else picture.quantize(16)
    if mode == "LA":
        return Image.fromarray(np.dstack([rgb[..., 0], rgb[..., 1]]), mode="LA")
    if mode == "RGBA":
        return Image.fromarray(np.dstack([rgb, rgb[..., 2]]), mode="RGBA")
    if mode == "I;16":
        return Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    if mode == "F":
        return Image.fromarray(rgb[..., 0].astype(np.float32) / 255.0)
    return Image.fromarray(rgb).convert(mode)


def encode(picture: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


CASES = [
    ("PNG", "1"), ("PNG", "L"), ("PNG", "LA"), ("PNG", "P"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "I;16"),
    ("JPEG", "L"), ("JPEG", "RGB"), ("JPEG", "CMYK"),
    ("WEBP", "RGB"), ("WEBP", "RGBA"),
    ("BMP", "RGB"), ("BMP", "P"),
    ("GIF", "P"), ("GIF", "L"),
    ("TIFF", "RGB"), ("TIFF", "CMYK"), ("TIFF", "I;16"), ("TIFF", "F"),
]  # fmt: skip


# -- valid images ------------------------------------------------------------------------------
@pytest.mark.parametrize(("image_format", "mode"), CASES)
def test_every_format_and_mode_gives_the_models_own_prediction(service, model, image_format, mode):
    picture = random_image(mode)
    data = encode(picture, image_format)
    reply = post_image(service, data)
    assert reply.status == 200, reply.body
    body = reply.json()
    assert (body["width"], body["height"], body["image_format"], body["model"]) == (80, 64, image_format, "tiny")
    assert_matches_direct_prediction(model, data, payload_density(body))


def test_exif_orientation_is_applied(service, model):
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated by 90 degrees
    data = encode(random_image("RGB", size=(80, 64)), "JPEG", exif=exif)
    body = post_image(service, data).json()
    assert (body["width"], body["height"]) == (64, 80)
    assert_matches_direct_prediction(model, data, payload_density(body))


def test_the_type_comes_from_the_content_not_the_content_type_header(service):
    data = encode(random_image("RGB"), "PNG")
    reply = post_image(service, data, headers={"Content-Type": "image/jpeg"})
    assert reply.status == 200 and reply.json()["image_format"] == "PNG"


# -- outputs -----------------------------------------------------------------------------------
def test_overlay_fixations_and_stored_results(service, model):
    data = encode(random_image("RGB", seed=3), "PNG")
    query = "fixations=7&seed=5&show_density=false"
    body = post_image(service, data, query).json()
    log_density = payload_density(body)
    pixels = load_image(data)

    xs, ys = sample_fixations(log_density, 7, seed=5)
    assert body["fixations"] == {"x": xs.tolist(), "y": ys.tolist(), "seed": 5}
    assert ((0 <= xs) & (xs < 80)).all() and ((0 <= ys) & (ys < 64)).all()

    overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["overlay_png"]))))
    expected = density_overlay(pixels, log_density, show_density=False, show_contours=True, fixations=(xs, ys))
    np.testing.assert_array_equal(overlay, np.asarray(expected))

    # the stored result redraws the same picture, and others, without the image
    again = call(service, "GET", f"{body['links']['overlay']}?show_density=false&fixations=7&seed=5")
    assert again.status == 200 and again.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(again.body))), overlay)
    plain = call(service, "GET", f"{body['links']['overlay']}?show_contours=false")
    expected = density_overlay(pixels, log_density, show_density=True, show_contours=False)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(plain.body))), np.asarray(expected))
    stored = call(service, "GET", body["links"]["log_density"])
    np.testing.assert_array_equal(decode_npy(stored.body), log_density)


def test_raw_npy_and_png_outputs_and_json_without_payloads(service, model):
    data = encode(random_image("RGB", seed=4), "JPEG")
    npy = post_image(service, data, "output=npy")
    assert npy.status == 200 and npy.headers["content-type"] == "application/octet-stream"
    assert npy.headers["x-prediction-id"]
    assert_matches_direct_prediction(model, data, decode_npy(npy.body))

    png = post_image(service, data, "output=png&show_contours=false")
    assert png.status == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.body)).size == (80, 64)

    body = post_image(service, data, "log_density=false&overlay=false").json()
    assert "log_density" not in body and "overlay_png" not in body and "fixations" not in body


def test_fixations_without_a_seed_report_the_seed_that_reproduces_them(service):
    data = encode(random_image("RGB", seed=5), "PNG")
    body = post_image(service, data, "fixations=20&overlay=false").json()
    fixations = body["fixations"]
    xs, ys = sample_fixations(payload_density(body), 20, seed=fixations["seed"])
    assert fixations["x"] == xs.tolist() and fixations["y"] == ys.tolist()


def test_models_health_openapi_and_page(service, model, model_dir):
    models = call(service, "GET", "/v1/models").json()
    (info,) = models["models"]
    assert (info["name"], info["num_members"], info["device"]) == ("tiny", 2, "cpu")
    assert info["card"] == (model_dir / "README.md").read_text(encoding="utf-8")
    assert info["config"] == json.loads(json.dumps(model.config.to_dict()))
    assert models["limits"]["max_pixels"] == SETTINGS.max_pixels

    health = call(service, "GET", "/healthz").json()
    assert health["status"] == "ok"

    schema = call(service, "GET", "/openapi.json").json()
    predict = schema["paths"]["/v1/predict"]["post"]
    assert "image/png" in predict["requestBody"]["content"]
    assert {"413", "415", "422", "429", "408"} <= set(predict["responses"])
    assert {"/v1/models", "/healthz", "/v1/predictions/{prediction_id}/overlay.png"} <= set(schema["paths"])

    page = call(service, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    text = page.body.decode()
    assert 'id="file"' in text and 'id="overlay"' in text
    for asset in ("/static/app.js", "/static/style.css"):
        reply = call(service, "GET", asset)
        assert reply.status == 200
        text += reply.body.decode()
    assert "http://" not in text and "https://" not in text, "the page must work offline (no external assets)"


# -- refused inputs ----------------------------------------------------------------------------
def raw_post(url: str, headers: list[tuple[str, str]], body: bytes) -> Reply:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.putrequest("POST", "/v1/predict")
        for key, value in headers:
            connection.putheader(key, value)
        connection.endheaders()
        connection.send(body)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


REFUSALS = {
    "empty body": (lambda: b"", {}, 400, "empty_upload"),
    "text named as a png": (
        lambda: b"hello, not an image" * 10,
        {"Content-Type": "image/png"},
        415,
        "unsupported_image_type",
    ),
    "format not accepted (PPM)": (lambda: encode(random_image("RGB"), "PPM"), {}, 415, "unsupported_image_type"),
    "multipart form": (
        lambda: b"--x\r\nContent-Disposition: form-data; name=image\r\n\r\n123\r\n--x--\r\n",
        {"Content-Type": "multipart/form-data; boundary=x"},
        415,
        "multipart_not_accepted",
    ),
    "larger than the upload limit": (lambda: b"\0" * 310_000, {}, 413, "upload_too_large"),
    "more pixels than the limit": (lambda: png_header(1200, 1000), {}, 413, "too_many_pixels"),
    "decompression bomb": (lambda: png_header(100_000, 100_000), {}, 413, "too_many_pixels"),
    "truncated jpeg": (lambda: encode(random_image("RGB"), "JPEG")[:600], {}, 422, "corrupt_image"),
    "smaller than a readout cell": (
        lambda: encode(random_image("RGB", size=(1, 1)), "PNG"),
        {},
        422,
        "image_too_small",
    ),
    "too small for the backbone": (
        lambda: encode(random_image("RGB", size=(32, 32)), "PNG"),
        {},
        422,
        "unusable_image",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_uploads_get_a_4xx_json_error(service, case):
    make, headers, status, code = REFUSALS[case]
    reply = post_image(service, make(), headers=headers)
    assert reply.status == status, reply.body
    assert reply.error_code() == code


def test_oversized_uploads_are_refused_before_they_are_read(service):
    declared = raw_post(service, [("Content-Length", str(10**9))], b"\0" * 1000)
    assert declared.status == 413 and declared.error_code() == "upload_too_large"
    chunks = iter([b"\0" * 50_000] * 7)  # chunked, no Content-Length: counted while streaming
    streamed = call(service, "POST", "/v1/predict", chunks)
    assert streamed.status == 413 and streamed.error_code() == "upload_too_large"
    assert "at least" in streamed.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/predict?output=xml", 422, "invalid_parameter"),
        ("/v1/predict?fixations=-1", 422, "invalid_parameter"),
        ("/v1/predict?fixations=51", 422, "invalid_parameter"),
        ("/v1/predict?seed=x", 422, "invalid_parameter"),
    ],
)
def test_invalid_parameters_are_refused(service, path, status, code):
    reply = call(service, "POST", path, encode(random_image("RGB"), "PNG"))
    assert reply.status == status and reply.error_code() == code


def test_unknown_things_get_json_errors_and_the_service_keeps_serving(service, model):
    assert call(service, "GET", "/v1/predictions/nope/overlay.png").error_code() == "unknown_prediction"
    assert call(service, "GET", "/v1/predictions/nope/log_density.npy").error_code() == "unknown_prediction"
    assert call(service, "GET", "/no/such/page").error_code() == "not_found"
    assert call(service, "GET", "/v1/predict").error_code() == "method_not_allowed"
    data = encode(random_image("RGB", seed=9), "PNG")
    reply = post_image(service, data)
    assert reply.status == 200
    assert_matches_direct_prediction(model, data, payload_density(reply.json()))


# -- concurrency -------------------------------------------------------------------------------
def test_concurrent_requests_are_batched_without_mixing_results(service, model):
    sizes = [(80, 64), (96, 64), (64, 80)]
    uploads = [encode(random_image("RGB", size=sizes[i % 3], seed=100 + i), "PNG") for i in range(12)]
    before = call(service, "GET", "/healthz").json()
    with ThreadPoolExecutor(len(uploads)) as pool:
        replies = list(pool.map(lambda data: post_image(service, data, "output=npy"), uploads))
    after = call(service, "GET", "/healthz").json()

    results = [decode_npy(reply.body) for reply in replies]
    for data, result in zip(uploads, results):
        assert_matches_direct_prediction(model, data, result)
    same_size = [r for r in results if r.shape == results[0].shape]
    assert min(np.abs(a - b).max() for i, a in enumerate(same_size) for b in same_size[i + 1 :]) > 1e-2, (
        "test images too alike to detect mixed-up results"
    )
    assert after["images"] - before["images"] == 12
    assert after["batches"] - before["batches"] < 12, "no two requests shared a forward pass"
    assert after["largest_batch"] >= 2


@pytest.fixture
def blocked_service(model_dir):
    """A service whose model waits for ``release`` before every forward pass."""
    release = threading.Event()
    slow = load_model(str(model_dir))
    forward = slow.forward

    def waiting_forward(*args, **kwargs):
        release.wait(20)
        return forward(*args, **kwargs)

    slow.forward = waiting_forward
    settings = ServiceSettings(max_queue=1, request_timeout_s=1.0, max_batch=1)
    with BackgroundServer(create_app(slow, settings, name="slow")) as url:
        yield url, release
        release.set()


def test_busy_and_timed_out_requests_are_refused_and_the_service_recovers(blocked_service):
    url, release = blocked_service
    data = encode(random_image("RGB"), "PNG")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post_image, url, data)
        deadline = time.monotonic() + 10
        while call(url, "GET", "/healthz").json()["in_flight"] < 1:
            assert time.monotonic() < deadline, "the first request never reached the model"
            time.sleep(0.02)
        busy = post_image(url, data)
        assert busy.status == 429 and busy.error_code() == "busy" and busy.headers["retry-after"] == "1"
        timed_out = first.result(timeout=30)
    assert timed_out.status == 408 and timed_out.error_code() == "timeout"
    release.set()
    assert post_image(url, data).status == 200


# -- the command -------------------------------------------------------------------------------
def test_serve_command_starts_answers_and_stops(model_dir):
    command = [
        sys.executable,
        "-m",
        "deepgaze_hub",
        "serve",
        "--model",
        str(model_dir),
        "--port",
        "0",
        "--log-level",
        "warning",
    ]
    environment = {**os.environ, "DEEPGAZE_HUB_TOKEN": "cli-test-token"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environment)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        url, deadline, seen = None, time.monotonic() + 90, []
        while url is None:
            assert process.poll() is None and time.monotonic() < deadline, f"serve did not start: {seen}"
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            if "serving" in line:
                url = line.split(" at ")[1].split("/ ")[0]
        auth = {"Authorization": "Bearer cli-test-token"}
        assert call(url, "GET", "/v1/models").status == 401  # the token from the environment is required
        info = call(url, "GET", "/v1/models", headers=auth).json()["models"][0]
        assert info["name"] == model_dir.name  # the directory itself only with --show-model-path
        assert info["card"] == (model_dir / "README.md").read_text(encoding="utf-8")
        assert post_image(url, encode(random_image("RGB"), "PNG"), headers=auth).status == 200
    finally:
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=30)
    assert returncode == 0


def test_serve_command_errors(model_dir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli_main(["serve", "--model", str(model_dir), "--port", str(port)]) == 1
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    assert cli_main(["serve", "--model", str(model_dir), "--max-batch", "0"]) == 1
    assert "max_batch must be >= 1" in capsys.readouterr().err
    assert cli_main(["serve", "--model", str(model_dir / "missing"), "--port", "0"]) == 1
    assert "missing" in capsys.readouterr().err
    # not a number: a usage error, from argparse
    assert cli_main(["serve", "--model", str(model_dir), "--max-batch", "many"]) == 2
    assert "--max-batch" in capsys.readouterr().err
