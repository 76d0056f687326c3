"""Resumable, cached, checked downloads of release files, against a local HTTP server.

The server (http.server on 127.0.0.1, a free port) speaks the protocol GitHub's release downloads
use: ``/redirect/<name>`` answers 302 to ``/files/<name>``, which honours ``Range: bytes=N-`` with
206 + ``Content-Range`` and ``If-Range`` against its ``ETag``. Switches make it ignore ranges,
drop the connection part-way, stall, or send no ``Content-Length``; it logs every request.
"""

from __future__ import annotations

import hashlib
import http.server
import random
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from deepgaze_hub.errors import ConfigError, WeightsError
from deepgaze_hub.io import download as dl
from deepgaze_hub.io.cache import cache_root

SIZE = 300_000
DATA = random.Random(0).randbytes(SIZE)
SHA = hashlib.sha256(DATA).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        s = self.server
        s.log.append((self.path, self.headers.get("Range"), self.headers.get("If-Range")))
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "/files/" + self.path.removeprefix("/redirect/"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name = self.path.removeprefix("/files/")
        if not self.path.startswith("/files/") or name not in s.files:
            self.send_error(404, "Not Found")
            return
        body = s.files[name]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if_range = self.headers.get("If-Range")
        if s.ranges and match and (if_range is None or if_range == s.etag):
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        if s.content_length:
            self.send_header("Content-Length", str(len(body) - start))
        if s.etag:
            self.send_header("ETag", s.etag)
        self.end_headers()
        payload = body[start:]
        cut = None
        if s.drops > 0:
            s.drops -= 1
            cut = s.cut_at
        sent = 0
        for i in range(0, len(payload), 16_384):
            piece = payload[i : i + 16_384]
            if cut is not None and sent + len(piece) > cut:
                self.wfile.write(piece[: cut - sent])
                self.wfile.flush()
                time.sleep(s.stall)  # a stall, then the connection closes (HTTP/1.0)
                return
            self.wfile.write(piece)
            sent += len(piece)
            if s.throttle:
                time.sleep(s.throttle)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = {"w.pth": DATA}
        self.log: list[tuple[str, str | None, str | None]] = []
        self.ranges = True
        self.etag: str | None = '"v1"'
        self.content_length = True
        self.drops = 0  # how many next file responses are cut at `cut_at` bytes
        self.cut_at = 120_000
        self.stall = 0.0
        self.throttle = 0.0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def file_requests(self):
        return [entry for entry in self.log if entry[0].startswith("/files/")]


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def online(monkeypatch):
    for name in dl.OFFLINE_ENVS:
        monkeypatch.delenv(name, raising=False)


def _get(server, tmp_path, **kwargs):
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("progress", False)
    return dl.download_release(server.url("/redirect/w.pth"), cache_dir=tmp_path, **kwargs)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + dl.PARTIAL_SUFFIX)


def test_cache_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPGAZE_HUB_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache_root() == tmp_path / "a"
    monkeypatch.delenv("DEEPGAZE_HUB_CACHE")
    assert cache_root() == tmp_path / "x" / "deepgaze-hub"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "deepgaze-hub"


def test_release_path_is_predictable_and_stays_in_the_cache(tmp_path):
    url = "https://github.com/matthias-k/DeepGaze/releases/download/v1.0.0/deepgaze2e.pth"
    assert dl.release_path(url, tmp_path) == tmp_path.joinpath(
        "releases", "github.com", "matthias-k", "DeepGaze", "releases", "download", "v1.0.0", "deepgaze2e.pth"
    )
    local = dl.release_path("http://127.0.0.1:8000/a%20b/c.pth", tmp_path)
    assert local == tmp_path / "releases/127.0.0.1_8000/a_b/c.pth"
    for bad in ["ftp://h/x.pth", "https://h/", "https://h/a/../x.pth", "https://h/x.pth?sig=1", "file:///etc/passwd"]:
        with pytest.raises(ConfigError):
            dl.release_path(bad, tmp_path)
    with pytest.raises(ConfigError, match="64 hex digits"):
        dl.download_release(url, sha256="abc", cache_dir=tmp_path)


def test_download_follows_redirect_returns_sha_then_works_offline(server, tmp_path, monkeypatch):
    path, digest = _get(server, tmp_path)
    assert digest == SHA and path.read_bytes() == DATA
    assert [e[0] for e in server.log] == ["/redirect/w.pth", "/files/w.pth"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.pth", "w.pth.lock"]  # no partial left

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _get(server, tmp_path, sha256=SHA) == (path, SHA)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    server.shutdown()  # no network at all: the cached copy is still served
    assert _get(server, tmp_path) == (path, SHA)
    assert len(server.log) == 2


def test_dropped_connection_resumes_with_a_range_request(server, tmp_path):
    server.drops = 1
    with pytest.raises(WeightsError, match="120000 of 300000 bytes.*resume") as info:
        _get(server, tmp_path, retries=0)
    path = dl.release_path(server.url("/redirect/w.pth"), tmp_path)
    assert str(_partial(path)) in str(info.value)
    assert _partial(path).read_bytes() == DATA[:120_000] and not path.exists()

    path2, digest = _get(server, tmp_path, sha256=SHA)
    assert path2 == path and digest == SHA and path.read_bytes() == DATA
    # the Range and If-Range headers survive the redirect and reach the file server
    assert server.log[-2:] == [("/redirect/w.pth", "bytes=120000-", '"v1"'), ("/files/w.pth", "bytes=120000-", '"v1"')]
    assert not _partial(path).exists() and not path.with_name("w.pth.partial.json").exists()


def test_retries_resume_within_one_call(server, tmp_path):
    server.drops = 2
    server.cut_at = 100_000
    _, digest = _get(server, tmp_path, retries=2)
    assert digest == SHA
    assert [e[1] for e in server.file_requests()] == [None, "bytes=100000-", "bytes=200000-"]


def test_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    server.drops = 1
    with pytest.raises(WeightsError):
        _get(server, tmp_path, retries=0)
    server.ranges = False
    path, digest = _get(server, tmp_path)
    assert server.file_requests()[-1][1] == "bytes=120000-"  # asked for the rest, got 200 + everything
    assert digest == SHA and path.read_bytes() == DATA  # not appended to the partial bytes


def test_file_changed_on_the_server_is_downloaded_afresh(server, tmp_path):
    server.drops = 1
    with pytest.raises(WeightsError):
        _get(server, tmp_path, retries=0)
    new = DATA[::-1]
    server.files["w.pth"], server.etag = new, '"v2"'
    path, digest = _get(server, tmp_path)  # If-Range "v1" no longer matches: the server sends 200
    assert digest == hashlib.sha256(new).hexdigest() and path.read_bytes() == new


def test_partial_longer_than_the_new_file_starts_over(server, tmp_path):
    server.drops, server.etag = 1, None  # no validator: the server cannot tell the file changed
    with pytest.raises(WeightsError):
        _get(server, tmp_path, retries=0)
    server.files["w.pth"] = DATA[:50_000]
    path, digest = _get(server, tmp_path)
    assert [e[1] for e in server.file_requests()[-2:]] == ["bytes=120000-", None]  # 416, then from 0
    assert path.read_bytes() == DATA[:50_000]


def test_resumed_file_failing_its_pin_is_downloaded_once_more(server, tmp_path):
    server.drops, server.etag = 1, None
    with pytest.raises(WeightsError):
        _get(server, tmp_path, retries=0)
    new = bytes(b ^ 1 for b in DATA)  # same size, other bytes: the resumed file is a mix
    server.files["w.pth"] = new
    _, digest = _get(server, tmp_path, sha256=hashlib.sha256(new).hexdigest())
    assert digest == hashlib.sha256(new).hexdigest()
    assert [e[1] for e in server.file_requests()[-2:]] == ["bytes=120000-", None]


def test_read_timeout_keeps_the_partial_file(server, tmp_path):
    server.drops, server.stall = 1, 1.0
    with pytest.raises(WeightsError, match="stopped"):
        _get(server, tmp_path, retries=0, timeout=0.3)
    path = dl.release_path(server.url("/redirect/w.pth"), tmp_path)
    assert _partial(path).stat().st_size == 120_000
    assert _get(server, tmp_path, timeout=5.0)[1] == SHA


def test_404_names_the_url(server, tmp_path):
    url = server.url("/redirect/missing.pth")
    with pytest.raises(WeightsError, match=r"missing.pth: the server answered HTTP 404.*release tag"):
        dl.download_release(url, cache_dir=tmp_path, progress=False)
    assert not dl.release_path(url, tmp_path).exists()


def test_pinned_sha_mismatch_deletes_the_download(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(WeightsError, match=f"has sha256 {SHA}, but {wrong} is pinned"):
        _get(server, tmp_path, sha256=wrong)
    path = dl.release_path(server.url("/redirect/w.pth"), tmp_path)
    assert not path.exists() and not _partial(path).exists()


def test_cached_file_failing_its_pin_is_moved_aside(server, tmp_path):
    path = dl.release_path(server.url("/redirect/w.pth"), tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"put here by hand, wrongly")
    with pytest.raises(WeightsError, match="moved aside"):
        _get(server, tmp_path, sha256=SHA.upper())  # a pin is compared case-insensitively
    assert path.with_name("w.pth.rejected").read_bytes() == b"put here by hand, wrongly"
    assert server.log == []
    assert _get(server, tmp_path, sha256=SHA) == (path, SHA)  # the next call downloads it


def test_offline_without_cached_copy_says_where_to_put_the_file(server, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGAZE_HUB_OFFLINE", "1")
    url = server.url("/redirect/w.pth")
    with pytest.raises(WeightsError) as info:
        _get(server, tmp_path, sha256=SHA)
    message = str(info.value)
    assert "offline mode is on" in message and url in message and SHA in message
    assert str(dl.release_path(url, tmp_path)) in message
    assert server.log == []


def test_unreachable_server_says_where_to_put_the_file(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/w.pth"
    with pytest.raises(WeightsError, match="could not be reached") as info:
        dl.download_release(url, cache_dir=tmp_path, timeout=2.0, progress=False)
    assert str(dl.release_path(url, tmp_path)) in str(info.value)


def test_announced_size_over_the_limit_is_refused_before_writing(server, tmp_path):
    with pytest.raises(WeightsError, match="300000 bytes, more than the 100000 bytes allowed"):  # from headers
        _get(server, tmp_path, max_bytes=100_000)
    path = dl.release_path(server.url("/redirect/w.pth"), tmp_path)
    assert not _partial(path).exists() and not path.exists()


def test_unannounced_size_over_the_limit_stops_the_transfer(server, tmp_path):
    server.content_length = False  # body ends when the connection closes
    with pytest.raises(WeightsError, match="more than the 100000 bytes allowed"):
        _get(server, tmp_path, max_bytes=100_000)
    path = dl.release_path(server.url("/redirect/w.pth"), tmp_path)
    assert not _partial(path).exists() and not path.exists()
    assert _get(server, tmp_path)[1] == SHA  # within the limit it works without Content-Length


def test_concurrent_calls_download_once(server, tmp_path):
    server.throttle = 0.01  # about 0.2 s for the whole file, so the calls overlap
    results = []
    threads = [threading.Thread(target=lambda: results.append(_get(server, tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(results) == 3 and {r[1] for r in results} == {SHA}
    assert len(server.file_requests()) == 1


def test_progress_bar_only_when_asked_or_on_a_terminal(server, tmp_path, capsys):
    _get(server, tmp_path / "a", progress=None)  # stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""
    _get(server, tmp_path / "b", progress=True)
    assert "w.pth" in capsys.readouterr().err
