"""The service's web page in headless Chromium: upload an image, see the overlay, toggle, download.

Drives Debian's ``chromium`` through its ``chromedriver`` (package ``chromium-driver``) with the
W3C WebDriver protocol over plain HTTP (stdlib only); no browser is downloaded. Skipped where
either program is missing.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.service import BackgroundServer, ServiceSettings, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element reference key

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="headless browser test needs Chromium and ChromeDriver on PATH "
    "(Debian: apt-get install -y chromium chromium-driver); not found",
)


class WebDriver:
    """Just enough of the W3C WebDriver protocol to drive one Chromium session."""

    def __init__(self, port: int, profile: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._send("GET", "/status")["ready"]:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise RuntimeError("chromedriver did not start")
            time.sleep(0.1)
        arguments = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
            f"--user-data-dir={profile}", "--window-size=1200,900",
        ]  # fmt: skip
        capabilities = {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": arguments}}
        self.session = self._send("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})["sessionId"]

    def _send(self, method: str, path: str, payload: dict | None = None):
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"WebDriver {method} {path}: {error.read().decode()[:500]}") from None

    def command(self, method: str, path: str, payload: dict | None = None):
        return self._send(method, f"/session/{self.session}{path}", payload)

    def open(self, url: str) -> None:
        self.command("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        return self.command("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def script(self, source: str, *args):
        return self.command("POST", "/execute/sync", {"script": source, "args": list(args)})

    def wait_for(self, source: str, timeout: float = 30.0):
        """Poll a script until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        while not (value := self.script(source)):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {source}")
            time.sleep(0.1)
        return value

    def close(self) -> None:
        try:
            self._send("DELETE", f"/session/{self.session}")
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def page_url():
    backbone = BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None)
    torch.manual_seed(0)
    model = DeepGaze(DeepGazeConfig(backbone=backbone, num_members=2))
    with BackgroundServer(create_app(model, ServiceSettings(batch_wait_ms=0), name="page-test")) as url:
        yield url


@pytest.fixture
def browser(tmp_path):
    driver = WebDriver(free_port(), str(tmp_path / "profile"))
    try:
        yield driver
    finally:
        driver.close()


LOADED_OVERLAY = """
const img = document.getElementById('overlay');
return !document.getElementById('result').hidden && img.complete && img.naturalWidth > 0
    ? [img.naturalWidth, img.naturalHeight, img.src.slice(0, 60)] : null;
"""


def test_upload_shows_the_overlay_and_toggles_redraw_it(page_url, browser, tmp_path):
    picture = tmp_path / "street scene.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(picture)

    browser.open(page_url + "/")
    assert browser.wait_for("return document.getElementById('model-info').textContent.includes('page-test')")
    browser.command("POST", f"/element/{browser.find('#file')}/value", {"text": str(picture)})

    width, height, source = browser.wait_for(LOADED_OVERLAY)
    assert (width, height) == (128, 96)
    assert source.startswith("data:image/png;base64,")
    assert "128 x 96 pixels, PNG" in browser.script("return document.getElementById('caption').textContent")
    links = browser.script(
        "return ['download-overlay', 'download-density', 'download-fixations'].map("
        "id => [document.getElementById(id).hidden, document.getElementById(id).getAttribute('download')]);"
    )
    assert links == [
        [False, "street scene-overlay.png"],
        [False, "street scene-log-density.npy"],
        [False, "street scene-fixations.csv"],
    ]

    browser.command("POST", f"/element/{browser.find('#show-density')}/click", {})
    width, height, source = browser.wait_for(
        LOADED_OVERLAY.replace("? [", "&& img.src.includes('show_density=false') ? [")
    )
    assert (width, height) == (128, 96) and "/v1/predictions/" in source
    density_link = browser.script("return document.getElementById('download-density').href")
    npy = urllib.request.urlopen(density_link, timeout=30).read()
    assert npy.startswith(b"\x93NUMPY")


def test_a_refused_upload_shows_the_reason(page_url, browser, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is text, whatever its name says")
    browser.open(page_url + "/")
    browser.command("POST", f"/element/{browser.find('#file')}/value", {"text": str(not_an_image)})
    message = browser.wait_for("return document.getElementById('error').textContent")
    assert "not an image in an accepted format" in message
    assert browser.script("return document.getElementById('result').hidden") is True


@pytest.fixture(scope="module")
def guarded_page_url():
    backbone = BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None)
    torch.manual_seed(0)
    model = DeepGaze(DeepGazeConfig(backbone=backbone, num_members=1))
    app = create_app(model, ServiceSettings(batch_wait_ms=0), name="guarded", token="page-token")
    with BackgroundServer(app) as url:
        yield url


def test_a_service_with_a_token_asks_for_it_and_sends_it(guarded_page_url, browser, tmp_path):
    picture = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(picture)
    browser.open(guarded_page_url + "/")
    assert "access token" in browser.wait_for("return document.getElementById('error').textContent")
    assert browser.script("return document.getElementById('access').hidden") is False

    browser.command("POST", f"/element/{browser.find('#token')}/value", {"text": "page-token"})
    browser.script("document.getElementById('token').dispatchEvent(new Event('change'))")
    assert browser.wait_for("return document.getElementById('model-info').textContent.includes('guarded')")
    assert browser.script("return sessionStorage.getItem('deepgaze-hub-token')") == "page-token"

    browser.command("POST", f"/element/{browser.find('#file')}/value", {"text": str(picture)})
    width, height, _ = browser.wait_for(LOADED_OVERLAY)
    assert (width, height) == (128, 96)
    browser.command("POST", f"/element/{browser.find('#show-density')}/click", {})
    _, _, source = browser.wait_for(LOADED_OVERLAY.replace("? [", "&& img.src.startsWith('blob:') ? ["))
    assert source.startswith("blob:")  # fetched with the token, shown from memory
    assert browser.script("return document.getElementById('download-density').href").startswith("blob:")
