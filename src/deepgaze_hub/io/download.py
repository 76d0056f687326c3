"""Downloading one large file over HTTP(S) into the cache: resumable, checked, then offline.

Used for files published outside the Hugging Face Hub, such as the DeepGaze authors' GitHub
release files (hundreds of MB, no published checksum). `download_release` keeps each URL's file at
a fixed place under ``<cache root>/releases/`` (see `deepgaze_hub.io.cache`); once there, it is
used without any network access.

How a download goes:

- Bytes go to ``<file>.partial`` beside the final name, with ``<file>.partial.json`` recording
  the URL, the expected size and the server's ``ETag``/``Last-Modified``. The final name appears
  only once the file is complete (size as announced) and, when a sha256 is pinned, verified
  (an atomic rename).
- An interrupted download (dropped connection, read timeout, killed process) keeps its partial
  file; the next attempt (the same call again, or one of the ``retries`` of this call) asks for
  the rest with ``Range: bytes=N-`` and ``If-Range``. A server that answers the whole file (200)
  instead of the rest (206), or a rest that does not start at byte N, makes it start again from 0.
  When a resumed file fails its pinned sha256 it is downloaded once more from scratch.
- One process downloads a given file at a time: the others wait on an OS lock
  (``<file>.lock``, released by the OS when its holder dies, so it is never stale) and then use
  the finished file. The partial file name is therefore fixed, and any later process can resume.
- Sizes are checked before anything is written: an announced size (``Content-Length`` or the
  ``Content-Range`` total) over ``max_bytes`` is refused, and so is a body without announced size
  once it grows past it.
- Offline mode (``HF_HUB_OFFLINE=1`` or ``DEEPGAZE_HUB_OFFLINE=1``) never opens a connection; a file
  that is not cached then raises `WeightsError` naming the URL and the exact path to put it at by
  hand, as does a failed connection.

Only the standard library's ``urllib`` is used (no extra dependency); redirects (GitHub answers
302 to its storage host) are followed, but never from https to http.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import ConfigError, WeightsError
from ..version import __version__
from .atomic import atomic_write_text
from .cache import cache_root

try:  # POSIX
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

#: Subfolder of the cache root holding downloaded release files.
RELEASES_FOLDER = "releases"
#: Largest file `download_release` accepts unless told otherwise (2 GiB).
MAX_DOWNLOAD_BYTES = 2 * 1024**3
#: Environment variables that switch offline mode on (either one, "1"/"true"/"yes"/"on").
OFFLINE_ENVS = ("DEEPGAZE_HUB_OFFLINE", "HF_HUB_OFFLINE")
#: How long a process waits for another one downloading the same file, in seconds.
LOCK_WAIT_S = 3 * 3600.0

PARTIAL_SUFFIX = ".partial"
REJECTED_SUFFIX = ".rejected"
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_SAFE_SEGMENT = re.compile(r"[^A-Za-z0-9._+-]")


def is_offline() -> bool:
    """Whether offline mode is on (see `OFFLINE_ENVS`), read from the environment at each call."""
    return any(os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"} for name in OFFLINE_ENVS)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def release_path(url: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where `download_release` keeps the file of ``url``: ``<cache root>/releases/<host>/<url path>``.

    Every path segment is reduced to ``[A-Za-z0-9._+-]`` (others become ``_``; a port is joined to
    the host with ``_``), so the path is predictable and stays inside the cache folder.
    ``ConfigError`` for a URL that is not plain http(s) with a file name.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"release URL {url!r} must start with https:// (or http://) and name a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"release URL {url!r} must not carry a query, a fragment or credentials")
    segments = [urllib.parse.unquote(s) for s in parts.path.split("/") if s]
    if not segments or any(s in (".", "..") for s in segments):
        raise ConfigError(f"release URL {url!r} must end with a file name (and contain no '.' or '..' segments)")
    host = parts.hostname + (f"_{parts.port}" if parts.port else "")
    names = [_SAFE_SEGMENT.sub("_", s) for s in [host, *segments]]
    return cache_root(cache_dir) / RELEASES_FOLDER / Path(*names)


def download_release(
    url: str,
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    timeout: float = 30.0,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    retries: int = 2,
) -> tuple[Path, str]:
    """Return ``(path, sha256)`` of the cached copy of ``url``, downloading it first if needed.

    ``sha256``: the pinned checksum (64 hex digits) or None. With None, nothing is verified and the
    returned checksum (of the bytes on disk) is what the caller should show so that users can pin
    it. A pinned checksum is checked on every call, cached file included; a mismatching download is
    deleted, a mismatching cached file (perhaps put there by hand) is renamed ``<file>.rejected``.
    ``progress``: a byte progress bar on stderr; None shows it only when stderr is a terminal and
    ``HF_HUB_DISABLE_PROGRESS_BARS`` is not set. ``timeout``: seconds to wait for a connection and
    for each read. ``max_bytes``: the largest file accepted. ``retries``: how many times an
    interrupted transfer is resumed within this call (a later call resumes it too).

    Raises `WeightsError` (message says what to do) for HTTP errors, no network, offline mode
    without a cached copy, a file too large, an interrupted transfer that ran out of retries, or a
    checksum mismatch; `ConfigError` for a malformed ``url`` or ``sha256``.
    """
    expected = _checked_sha256(sha256, url)
    path = release_path(url, cache_dir)
    if path.is_file():
        return path, _verified_cached(path, expected, url)
    if is_offline():
        reason = "offline mode is on (HF_HUB_OFFLINE or DEEPGAZE_HUB_OFFLINE)"
        raise WeightsError(_fetch_by_hand(url, path, expected, reason))
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path.with_name(path.name + ".lock"), f"downloading {url}"):
        if path.is_file():  # another process finished it while this one waited
            return path, _verified_cached(path, expected, url)
        show = _show_progress(progress)
        digest = _download(url, path, expected, show=show, timeout=timeout, max_bytes=max_bytes, retries=retries)
    return path, digest


# ----------------------------------------------------------------------------------------------
# checks


def _checked_sha256(sha256: str | None, url: str) -> str | None:
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256.strip().lower()):
        raise ConfigError(f"the sha256 pinned for {url} must be 64 hex digits, got {sha256!r}")
    return sha256.strip().lower()


def _verified_cached(path: Path, expected: str | None, url: str) -> str:
    digest = file_sha256(path)
    if expected is not None and digest != expected:
        rejected = path.with_name(path.name + REJECTED_SUFFIX)
        os.replace(path, rejected)
        raise WeightsError(
            f"the cached copy of {url} has sha256 {digest}, but {expected} is pinned; it was moved "
            f"aside to {rejected}. Load again to download a fresh copy (if the mismatch persists, the "
            "file at that URL changed: report it)."
        )
    return digest


def _fetch_by_hand(url: str, path: Path, expected: str | None, reason: str) -> str:
    pin = f" Its sha256 must be {expected}." if expected else ""
    return (
        f"{url} is not in the cache and {reason}. Run the same call again with network access, or "
        f"download the file by hand (e.g. curl -L -o '{path}' '{url}') and put it at {path}.{pin}"
    )


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


# ----------------------------------------------------------------------------------------------
# locking


@contextlib.contextmanager
def exclusive(lock_path: Path, doing: str) -> Iterator[None]:
    """Hold an exclusive OS lock on ``lock_path`` (waits up to `LOCK_WAIT_S` for another holder).

    ``doing`` says what the holder does, for the message when waiting times out ("downloading
    URL"). The lock is released when the block ends or the process dies (never stale).
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise WeightsError(
                    f"another process has been {doing} for over {LOCK_WAIT_S:.0f} s "
                    f"(it holds {lock_path}); wait for it or stop it, then try again"
                )
            time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # BlockingIOError on POSIX, PermissionError on Windows
        return False
    return True


# ----------------------------------------------------------------------------------------------
# transfer


class _Interrupted(Exception):
    """The transfer stopped before the end; the partial file is kept for resuming."""


class _StartOver(Exception):
    """The partial file cannot be continued (the server's answer does not fit it); retry from 0."""


@dataclass
class _Partial:
    """A partial download: its bytes file and its metadata file."""

    data: Path
    meta: Path

    def size(self) -> int:
        try:
            return self.data.stat().st_size
        except FileNotFoundError:
            return 0

    def read_meta(self, url: str) -> dict | None:
        """The recorded metadata if it belongs to ``url`` and the data file exists, else None."""
        try:
            meta = json.loads(self.meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("url") != url or not self.data.is_file():
            return None
        return meta

    def clear(self) -> None:
        self.data.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)


def _download(
    url: str, path: Path, expected: str | None, *, show: bool, timeout: float, max_bytes: int, retries: int
) -> str:
    partial = _Partial(path.with_name(path.name + PARTIAL_SUFFIX), path.with_name(path.name + PARTIAL_SUFFIX + ".json"))
    interruptions = start_overs = 0
    fresh_after_mismatch = False
    while True:
        try:
            digest, resumed = _transfer(url, path, partial, show=show, timeout=timeout, max_bytes=max_bytes)
        except _StartOver:
            partial.clear()
            start_overs += 1
            if start_overs > 2:
                raise WeightsError(f"{url}: the server keeps answering ranges not asked for; try again later") from None
            continue
        except _Interrupted as error:
            interruptions += 1
            if interruptions > retries:
                kept = partial.size()
                resume = f"the {kept} bytes received are kept in {partial.data}: run the same call again to resume"
                raise WeightsError(
                    f"the download of {url} stopped: {error}; "
                    + (resume if kept else "run the same call again when the network works")
                ) from None
            continue
        if expected is not None and digest != expected:
            partial.clear()
            if resumed and not fresh_after_mismatch:  # the earlier part may come from another version
                fresh_after_mismatch = True
                continue
            raise WeightsError(
                f"the file downloaded from {url} has sha256 {digest}, but {expected} is pinned; it was "
                "deleted. The file at that URL changed or the pin is wrong: report it."
            )
        os.replace(partial.data, path)
        partial.meta.unlink(missing_ok=True)
        return digest


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoDowngradeRedirect())


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects (keeping ``Range``/``If-Range``), but never from https to http."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if req.full_url.startswith("https:") and not newurl.startswith("https:"):
            raise WeightsError(f"{req.full_url} redirects to a non-https address ({newurl}); refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _transfer(
    url: str, path: Path, partial: _Partial, *, show: bool, timeout: float, max_bytes: int
) -> tuple[str, bool]:
    """Fetch the missing bytes of ``partial``; return (sha256 of the whole file, whether it resumed)."""
    meta = partial.read_meta(url)
    have = partial.size() if meta is not None else 0
    if meta is None:
        partial.clear()
    elif meta.get("total") is not None and have == meta["total"]:  # complete, not yet renamed
        return file_sha256(partial.data), True
    elif meta.get("total") is not None and have > meta["total"]:
        raise _StartOver
    response = _open(url, path, _request_headers(meta, have), have=have, timeout=timeout)
    with response:
        start, total = _range_of(response, have, url)
        if start and total != meta.get("total"):
            raise _StartOver  # the file changed size since the partial download began
        if total is not None and total > max_bytes:
            raise WeightsError(f"{url} is {total} bytes, more than the {max_bytes} bytes allowed (max_bytes); refused")
        validators = {"etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified")}
        atomic_write_text(partial.meta, json.dumps({"url": url, "total": total, **validators}))
        digest, size = _copy_body(response, partial, url, path.name, start, total, show=show, max_bytes=max_bytes)
    if total is not None and size != total:
        raise _Interrupted(f"the connection closed after {size} of {total} bytes")
    return digest.hexdigest(), bool(start)


def _request_headers(meta: dict | None, have: int) -> dict[str, str]:
    """The request's headers: a range request with its validator when ``have`` bytes are kept."""
    headers = {"User-Agent": f"deepgaze-hub/{__version__}", "Accept-Encoding": "identity"}
    if have and meta is not None:
        headers["Range"] = f"bytes={have}-"
        etag = meta.get("etag")
        validator = etag if etag and not str(etag).startswith("W/") else meta.get("last_modified")  # weak tags can't
        if validator:
            headers["If-Range"] = validator
    return headers


def _open(url: str, path: Path, headers: dict[str, str], *, have: int, timeout: float) -> http.client.HTTPResponse:
    """Send the request; HTTP and network failures become `WeightsError`, `_StartOver` or `_Interrupted`."""
    try:
        return _opener().open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and have:  # the partial file does not fit the file served now
            raise _StartOver from None
        hint = " (no such file: check the URL and the release tag)" if error.code == 404 else ""
        hint = hint or (" (a server error: try again later)" if error.code >= 500 else "")
        raise WeightsError(f"{url}: the server answered HTTP {error.code} {error.reason}{hint}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, (TimeoutError, ConnectionResetError, ConnectionAbortedError)):
            raise _Interrupted(f"no answer ({error.reason})") from None
        raise WeightsError(_fetch_by_hand(url, path, None, f"it could not be reached ({error.reason})")) from None
    except (TimeoutError, OSError, http.client.HTTPException) as error:
        raise _Interrupted(f"no answer ({error or type(error).__name__})") from None


def _copy_body(
    response: http.client.HTTPResponse,
    partial: _Partial,
    url: str,
    name: str,
    start: int,
    total: int | None,
    *,
    show: bool,
    max_bytes: int,
) -> tuple["hashlib._Hash", int]:
    """Append the body to the partial file from byte ``start``; return (sha256 so far, bytes in the file)."""
    digest = hashlib.sha256()
    if start:
        with open(partial.data, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
    size = start
    bar = tqdm(
        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
        file=sys.stderr, disable=not show, leave=False,
    )
    with bar, open(partial.data, "ab" if start else "wb") as out:  # "wb": a 200 answer restarts from 0
        while True:
            try:
                # read1: what has arrived so far, so that bytes before a stall are kept
                chunk = response.read1(min(_CHUNK, max_bytes + 1 - size))
            except (TimeoutError, OSError, http.client.HTTPException) as error:
                raise _Interrupted(f"{error or type(error).__name__} after {size} bytes") from None
            if not chunk:
                break
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            bar.update(len(chunk))
            if size > max_bytes:
                out.close()
                partial.clear()
                raise WeightsError(f"{url} is more than the {max_bytes} bytes allowed (max_bytes); refused")
        out.flush()
        os.fsync(out.fileno())
    return digest, size


def _range_of(response: http.client.HTTPResponse, have: int, url: str) -> tuple[int, int | None]:
    """(first byte offset, total size or None) of what ``response`` carries."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != have:
            raise _StartOver  # not the rest we asked for
        return have, None if match.group(3) == "*" else int(match.group(3))
    if response.status != 200:
        raise WeightsError(f"{url}: unexpected HTTP {response.status} answer")
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.strip().isdigit() else None
