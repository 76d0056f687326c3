"""The service under abuse, over real sockets on 127.0.0.1: slow uploads, stalled headers, bad
settings, security headers, HEAD, tokens, hidden model paths, errors that must not be 500s."""

from __future__ import annotations

import argparse
import contextlib
import html.parser
import selectors
import socket
import time
import urllib.parse

import pytest

from deepgaze_hub.cli import main as cli_main
from deepgaze_hub.cli import serve as serve_cli
from deepgaze_hub.errors import ConfigError, ImageError
from deepgaze_hub.hub import load as load_model
from deepgaze_hub.service import BackgroundServer, ServiceSettings, create_app
from deepgaze_hub.service import handling
from test_service_api import call, encode, post_image, random_image, save_test_model

SLOW_CLIENT = "127.0.0.2"  # another loopback address: the server sees another client


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_test_model(tmp_path_factory.mktemp("hardening-model"))


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(str(model_dir))


@pytest.fixture(scope="module")
def png():
    return encode(random_image("RGB"), "PNG")


def host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port


def open_slow_upload(url: str, source: str = SLOW_CLIENT) -> socket.socket:
    """A connection that sent its headers and 2 bytes of a 100 kB upload, then nothing."""
    sock = socket.create_connection(host_port(url), timeout=10, source_address=(source, 0))
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab")
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic() - start


def replies_when_closed(socks: list[socket.socket], count: int, timeout: float) -> dict[socket.socket, bytes]:
    """Reads all ``socks`` at once until ``count`` of them are closed by the server (or ``timeout``):
    what each closed one received. The server may take connections in any order, so which ones
    it refuses is found out, not assumed."""
    received = {sock: b"" for sock in socks}
    closed: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while len(closed) < count and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                try:
                    chunk = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[key.fileobj] += chunk
                else:
                    selector.unregister(key.fileobj)
                    closed[key.fileobj] = received[key.fileobj]
    return closed


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- slow uploads and stalled connections --------------------------------------------------------
def test_slow_uploads_of_one_client_do_not_lock_out_the_others(model, png):
    settings = ServiceSettings(max_queue=1, max_uploads_per_client=4, upload_timeout_s=6.0, header_timeout_s=30)
    with BackgroundServer(create_app(model, settings, name="tiny")) as url:
        slow = [open_slow_upload(url) for _ in range(32)]
        try:
            wait_for(lambda: call(url, "GET", "/healthz").json()["uploading"] == 4)
            refused = replies_when_closed(slow, 28, timeout=5)  # over the per-client limit
            assert len(refused) == 28
            assert all(b" 429 " in reply.split(b"\r\n")[0] and b"too_many_uploads" in reply for reply in refused.values())
            for _ in range(3):  # another client is served while the 4 slow uploads hold their slots
                reply = post_image(url, png)
                assert reply.status == 200, reply.body
            assert call(url, "GET", "/healthz").json()["uploading"] == 4
            for sock in (sock for sock in slow if sock not in refused):  # answered 408 at the upload timeout
                data, seconds = read_until_closed(sock, 10)
                assert b" 408 " in data.split(b"\r\n")[0] and b"upload_timeout" in data
                assert seconds < 8
            assert call(url, "GET", "/healthz").json()["uploading"] == 0
        finally:
            for sock in slow:
                sock.close()


def test_uploads_of_all_clients_together_are_bounded(model, png):
    settings = ServiceSettings(max_uploads=2, max_uploads_per_client=8, upload_timeout_s=5.0)
    with BackgroundServer(create_app(model, settings, name="tiny")) as url:
        slow = [open_slow_upload(url) for _ in range(2)]
        try:
            wait_for(lambda: call(url, "GET", "/healthz").json()["uploading"] == 2)
            reply = post_image(url, png)
            assert reply.status == 429 and reply.error_code() == "busy" and reply.headers["retry-after"] == "1"
        finally:
            for sock in slow:
                sock.close()
        wait_for(lambda: call(url, "GET", "/healthz").json()["uploading"] == 0)
        assert post_image(url, png).status == 200


@pytest.mark.parametrize(
    "sent",
    [b"GET / HT", b"GET / HTTP/1.1\r\nHost: x\r\n", b"POST /v1/predict HTTP/1.1\r\nContent-Le"],
    ids=["partial request line", "headers never end", "partial header"],
)
def test_a_connection_that_never_finishes_its_headers_is_closed(model, sent):
    settings = ServiceSettings(header_timeout_s=0.5)
    with BackgroundServer(create_app(model, settings, name="tiny")) as url:
        with socket.create_connection(host_port(url), timeout=10) as sock:
            sock.sendall(sent)
            data, seconds = read_until_closed(sock, 10)
        assert data == b"" and 0.4 < seconds < 3


def test_the_header_deadline_applies_to_the_next_request_of_a_kept_alive_connection(model):
    settings = ServiceSettings(header_timeout_s=0.5)
    with BackgroundServer(create_app(model, settings, name="tiny")) as url:
        with socket.create_connection(host_port(url), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(5)
            response = b""
            while b"\r\n\r\n" not in response or not response.endswith(b"}"):  # the JSON body ends with }
                chunk = sock.recv(65536)
                assert chunk, f"closed after {response!r}"
                response += chunk
            assert response.startswith(b"HTTP/1.1 200 ")
            sock.sendall(b"GET /hea")  # keeps uvicorn's own keep-alive timer from closing it
            data, seconds = read_until_closed(sock, 10)
        assert data == b"" and seconds < 3


# -- settings at start-up ---------------------------------------------------------------------
def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepgaze-hub")
    serve_cli.register(parser.add_subparsers())
    return parser


def test_formats_accept_aliases_in_any_case_and_refuse_unknown_ones(model):
    assert ServiceSettings(image_formats=("jpg", "Tif", "PNG", "jpeg")).image_formats == ("JPEG", "TIFF", "PNG")
    for bad in (("JPG", "XYZ"), ("EPS",), ()):
        with pytest.raises(ConfigError, match="image_formats"):
            ServiceSettings(image_formats=bad)
    settings = ServiceSettings(image_formats=("JPG", "PNG"))
    with BackgroundServer(create_app(model, settings, name="tiny")) as url:
        reply = post_image(url, encode(random_image("RGB"), "JPEG"))
        assert reply.status == 200 and reply.json()["image_format"] == "JPEG"
        refused = post_image(url, encode(random_image("RGB"), "GIF"))
        assert refused.status == 415 and "JPEG, PNG" in refused.json()["error"]["message"]


def test_every_setting_has_a_generated_option():
    parser = serve_parser()
    args = parser.parse_args(["serve", "--model", "m"])
    assert serve_cli.settings_from_args(args) == ServiceSettings()
    args = parser.parse_args(
        "serve --model m --max-upload-mb 1.5 --formats jpg,tif --timeout 7 --upload-timeout-s 3 "
        "--header-timeout-s 2 --max-uploads 9 --max-uploads-per-client 3 --max-queue 5 --max-fixations 0 "
        "--result-cache-mb 2 --max-batch 1 --batch-wait-ms 0 --max-batch-pixels 100 --max-pixels 1000 "
        "--max-decodes 1 --max-working-pixels 5000 --full-size --precision bfloat16 --show-model-path".split()
    )
    assert serve_cli.settings_from_args(args) == ServiceSettings(
        max_upload_bytes=int(1.5 * 2**20),
        image_formats=("JPEG", "TIFF"),
        request_timeout_s=7.0,
        upload_timeout_s=3.0,
        header_timeout_s=2.0,
        max_uploads=9,
        max_uploads_per_client=3,
        max_queue=5,
        max_fixations=0,
        result_cache_bytes=2 * 2**20,
        max_batch=1,
        batch_wait_ms=0.0,
        max_batch_pixels=100,
        max_pixels=1000,
        max_decodes=1,
        max_working_pixels=5000,
        full_size=True,
        precision="bfloat16",
        show_model_path=True,
    )
    helps = " ".join(parser._subparsers._group_actions[0].choices["serve"].format_help().split())
    assert "default: 64 MiB" in helps and "default: 50000000" in helps and "default: JPEG,PNG,WEBP,BMP,GIF,TIFF" in helps


def test_serve_refuses_bad_settings_before_loading_anything(model_dir, capsys):
    status = cli_main(["serve", "--model", str(model_dir), "--port", "0", "--formats", "JPG,XYZ"])
    err = capsys.readouterr().err
    assert status == 1 and "'XYZ'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "loading model" not in err
    status = cli_main(["serve", "--model", str(model_dir), "--port", "0", "--token", "has space"])
    err = capsys.readouterr().err
    assert status == 1 and "token" in err and "Traceback" not in err


# -- errors are 4xx for users, 500 only for faults ------------------------------------------------
@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [
        (ImageError("the uploaded image cannot be used"), 422, "unusable_image"),
        (ConfigError("an option that does not fit"), 400, "invalid_request"),
        (RuntimeError("a bug"), 500, "internal_error"),
        (MemoryError(), 503, "out_of_memory"),
    ],
)
def test_library_errors_are_4xx_and_only_faults_are_5xx(model, png, monkeypatch, raised, status, code):
    def failing_decode(data, settings, scale):
        raise raised

    monkeypatch.setattr(handling, "prepare_upload", failing_decode)
    with BackgroundServer(create_app(model, ServiceSettings(), name="tiny")) as url:
        reply = post_image(url, png)
        assert reply.status == status and reply.error_code() == code
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert call(url, "GET", "/healthz").json()["in_flight"] == 0


# -- headers and HEAD -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(model):
    with BackgroundServer(create_app(model, ServiceSettings(), name="tiny")) as url:
        yield url


class ScriptsAndStyles(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.sources: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "style" or "style" in attrs or any(name.startswith("on") for name in attrs):
            self.inline.append(tag)
        if tag == "script":
            self._in_script = True
            if "src" in attrs:
                self.sources.append(attrs["src"])
            else:
                self.inline.append("script")

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append("script body")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/static/app.js", 200),
        ("GET", "/v1/models", 200),
        ("GET", "/healthz", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/no/such/page", 404),
        ("POST", "/v1/predict?fixations=-1", 422),
    ],
)
def test_every_response_carries_the_security_headers(service, method, path, status):
    reply = call(service, method, path, b"x" if method == "POST" else None)
    assert reply.status == status
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["referrer-policy"] == "no-referrer"
    policy = reply.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy


def test_the_page_needs_no_inline_script_or_style(service):
    parser = ScriptsAndStyles()
    parser.feed(call(service, "GET", "/").body.decode())
    assert parser.inline == [] and parser.sources == ["/static/app.js"]


@pytest.mark.parametrize("path", ["/", "/healthz", "/v1/models", "/static/app.js", "/openapi.json"])
def test_head_answers_like_get_without_a_body(service, path):
    got, head = call(service, "GET", path), call(service, "HEAD", path)
    assert head.status == got.status == 200 and head.body == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(got.body))
    assert head.headers["x-content-type-options"] == "nosniff"


def test_head_of_a_post_route_is_not_allowed(service):
    assert call(service, "HEAD", "/v1/predict").status == 405


# -- tokens and model paths -------------------------------------------------------------------
TOKEN = "t0ken-for-tests_only"


@pytest.fixture(scope="module")
def guarded(model):
    with BackgroundServer(create_app(model, ServiceSettings(), name="tiny", token=TOKEN)) as url:
        yield url


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}],
    ids=["none", "wrong", "other scheme", "longer"],
)
def test_v1_needs_the_token(guarded, png, headers):
    for method, path, body in [
        ("GET", "/v1/models", None),
        ("POST", "/v1/predict", png),
        ("GET", "/v1/predictions/x/overlay.png", None),
        ("GET", "/v1/predictions/x/log_density.npy", None),
    ]:
        reply = call(guarded, method, path, body, headers)
        assert reply.status == 401 and reply.error_code() == "unauthorized", path
        assert reply.headers["www-authenticate"].startswith("Bearer")


def test_the_token_opens_v1_and_the_page_and_health_stay_open(guarded, png):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert call(guarded, "GET", "/v1/models", headers=auth).status == 200
    body = post_image(guarded, png, headers=auth).json()
    assert call(guarded, "GET", body["links"]["overlay"], headers=auth).status == 200
    assert call(guarded, "GET", "/").status == 200 and call(guarded, "GET", "/healthz").status == 200
    assert call(guarded, "GET", "/static/app.js").status == 200


def test_tokens_that_cannot_travel_in_a_header_are_refused(model):
    for bad in ("", "two words", "caf\u00e9", "line\n"):
        with pytest.raises(ConfigError, match="token"):
            create_app(model, ServiceSettings(), token=bad)


def test_the_token_comes_from_the_flag_the_file_or_the_environment(tmp_path, monkeypatch):
    parser = serve_parser()
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.setenv(serve_cli.TOKEN_ENV, "from-env")
    read = lambda *extra: serve_cli.read_token(parser.parse_args(["serve", "--model", "m", *extra]))  # noqa: E731
    assert read() == "from-env"
    assert read("--token-file", str(token_file)) == "from-file"
    assert read("--token", "from-flag", "--token-file", str(token_file)) == "from-flag"
    monkeypatch.delenv(serve_cli.TOKEN_ENV)
    assert read() is None
    with pytest.raises(ConfigError, match="missing"):
        read("--token-file", str(tmp_path / "missing"))


@pytest.mark.parametrize("show", [False, True])
def test_the_model_directory_is_shown_only_when_asked(model, model_dir, show):
    settings = ServiceSettings(show_model_path=show)
    with BackgroundServer(create_app(model, settings, name=str(model_dir))) as url:
        reply = call(url, "GET", "/v1/models")
    (info,) = reply.json()["models"]
    assert (str(model_dir) in reply.body.decode()) is show
    assert info["name"] == (str(model_dir) if show else model_dir.name)
