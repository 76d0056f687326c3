"""A stand-in for the Hugging Face Hub on 127.0.0.1, for tests that run huggingface_hub's real client.

It speaks the parts of the Hub protocol that `hf_hub_download`, `HfApi.create_repo`,
`upload_folder` / `create_commit`, `create_tag`, `list_repo_files` and `repo_info` use (as read in
huggingface_hub 2.4.0):

* ``HEAD``/``GET /{repo}/resolve/{revision}/{path}``: the file with ``X-Repo-Commit``, ``ETag``
  (git blob id; for LFS files also ``X-Linked-Etag`` = sha256 and ``X-Linked-Size``). No
  ``X-Xet-Hash`` header is ever sent, so the client downloads with a plain ``GET``. Unknown repo,
  revision or file: 404 with ``X-Error-Code`` RepoNotFound / RevisionNotFound / EntryNotFound.
* ``POST /api/repos/create`` (409 with the url when it exists), ``POST /api/validate-yaml``.
* ``POST /api/models/{repo}/preupload/{rev}``: "lfs" for paths matching ``lfs_patterns``,
  "regular" otherwise, with the remote oid of unchanged files.
* ``POST /{repo}.git/info/lfs/objects/batch`` ("basic" transfer), ``PUT /lfs/{oid}`` (the
  upload, checked against its sha256), ``POST /lfs/verify``.
* ``POST /api/models/{repo}/commit/{rev}`` (ndjson: header, file, lfsFile, deletedFile),
  ``POST /api/models/{repo}/tag/{rev}``, ``GET /api/models/{repo}/tree/{rev}``,
  ``GET /api/models/{repo}/revision/{rev}``.

Xet: with ``hf_xet`` installed the client uploads every file the server calls "lfs" through Xet
storage, with no fallback to LFS, and this server has no Xet storage. So a hub with
``lfs_patterns`` is used with the client's Xet support switched off (``HF_HUB_DISABLE_XET``:
the LFS batch + PUT path), and a hub without them (everything "regular", sent inside the commit)
works with the client's default, Xet-enabled upload pipeline.

Writes need ``Authorization: Bearer <token>``; reads are anonymous (public repos). Every request
is logged in ``requests`` as ``(method, path)``.

Test modules get the ``local_hub`` fixture with ``pytest_plugins = ["hubserver"]``; this helper
module holds no test assertions, hence PYTEST_DONT_REWRITE (it may be imported before that).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

TOKEN = "hf_local_test_token"
REPO = r"(?P<repo>[^/]+/[^/]+)"


@dataclass
class StoredFile:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:
        """git's blob id of the content (what the Hub reports as a regular file's oid and ETag)."""
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class Repo:
    repo_id: str
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        """The commit a branch, tag or full commit hash names, or None."""
        if revision in self.commits:
            return revision
        return self.branches.get(revision) or self.tags.get(revision)


class HubServer:
    """The stand-in server. ``start()`` binds 127.0.0.1 on a free port; ``url`` is its endpoint."""

    def __init__(self, *, lfs_patterns: tuple[str, ...] = ("*.safetensors",), token: str = TOKEN) -> None:
        self.lfs_patterns = lfs_patterns
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_state = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    # -- direct access for tests (bypassing the client) ----------------------------------------
    def create_repo(self, repo_id: str) -> Repo:
        with self._lock:
            if repo_id not in self.repos:
                repo = Repo(repo_id)
                attributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in self.lfs_patterns)
                files = {".gitattributes": StoredFile(attributes.encode(), lfs=False)}
                repo.branches["main"] = self._store_commit(repo, None, files, "initial commit")
                self.repos[repo_id] = repo
            return self.repos[repo_id]

    def add_commit(
        self, repo_id: str, files: dict[str, bytes], message: str = "test commit", branch: str = "main"
    ) -> str:
        """Commit ``files`` (path -> bytes) on top of ``branch``; returns the commit hash."""
        repo = self.create_repo(repo_id)
        with self._lock:
            parent = repo.branches[branch]
            tree = dict(repo.commits[parent])
            for path, data in files.items():
                tree[path] = StoredFile(data, lfs=self.is_lfs(path, len(data)))
            commit = self._store_commit(repo, parent, tree, message)
            repo.branches[branch] = commit
            return commit

    def is_lfs(self, path: str, size: int) -> bool:
        return any(fnmatch.fnmatch(Path(path).name, pattern) for pattern in self.lfs_patterns) or size > 10 * 2**20

    def file(self, repo_id: str, revision: str, path: str) -> StoredFile:
        repo = self.repos[repo_id]
        return repo.commits[repo.resolve(revision)][path]

    @staticmethod
    def _store_commit(repo: Repo, parent: str | None, tree: dict[str, StoredFile], message: str) -> str:
        listing = {path: stored.etag for path, stored in sorted(tree.items())}
        payload = json.dumps({"parent": parent, "tree": listing, "message": message, "n": len(repo.commits)})
        commit = hashlib.sha1(payload.encode()).hexdigest()
        repo.commits[commit] = tree
        return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: HubServer

    def log_message(self, format: str, *args) -> None:
        pass  # keep test output clean; `requests` records what happened

    # -- plumbing ------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        self.server_state.requests.append((method, parts.path))
        self.query = parse_qs(parts.query)
        body = self._read_body() if method in ("POST", "PUT") else b""
        for verb, pattern, handler in _ROUTES:
            match = re.fullmatch(pattern, parts.path)
            if verb == method and match:
                groups = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
                try:
                    handler(self, body, **groups)
                except _HttpError as error:
                    self._error(error.status, error.message, error.code, error.headers)
                return
        self._error(404, f"no route for {method} {parts.path}")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, data, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        extra = {"X-Error-Message": message, **(headers or {})}
        if code:
            extra["X-Error-Code"] = code
        self._send(
            status,
            json.dumps({"error": message}).encode(),
            {"Content-Type": "application/json", **extra},
            head=self.command == "HEAD",
        )

    def _require_token(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {self.server_state.token}":
            raise _HttpError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str) -> Repo:
        repo = self.server_state.repos.get(repo_id)
        if repo is None:
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> str:
        commit = repo.resolve(revision)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # -- downloads -----------------------------------------------------------------------------
    def resolve_file(self, body: bytes, repo: str, revision: str, path: str) -> None:
        stored_repo = self._repo(repo)
        commit = self._commit(stored_repo, revision)
        stored = stored_repo.commits[commit].get(path)
        if stored is None:
            raise _HttpError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit})
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{stored.etag}"',
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(len(stored.data))})
        self._send(200, stored.data, headers, head=self.command == "HEAD")

    # -- repos, metadata -----------------------------------------------------------------------
    def create(self, body: bytes) -> None:
        self._require_token()
        payload = json.loads(body)
        if payload.get("type", "model") != "model":
            raise _HttpError(400, "this stand-in only hosts model repos")
        repo_id = (
            f"{payload['organization']}/{payload['name']}" if payload.get("organization") else f"user/{payload['name']}"
        )
        url = f"{self.server_state.url}/{repo_id}"
        if repo_id in self.server_state.repos:
            self._json({"error": "You already created this model repo", "url": url}, status=409)
            return
        self.server_state.create_repo(repo_id)
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def validate_yaml(self, body: bytes) -> None:
        content = json.loads(body)["content"]
        match = re.match(r"---\n(.*?)\n---\n", content, re.DOTALL)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as error:
            self._json({"errors": [{"message": f"invalid YAML: {error}"}]}, status=400)
            return
        warnings = [] if metadata else [{"message": "empty or missing YAML metadata in repo card"}]
        self._json({"errors": [], "warnings": warnings})

    def revision_info(self, body: bytes, repo: str, revision: str) -> None:
        stored_repo = self._repo(repo)
        commit = self._commit(stored_repo, revision)
        siblings = [{"rfilename": path} for path in sorted(stored_repo.commits[commit])]
        self._json({"id": repo, "modelId": repo, "sha": commit, "private": False, "siblings": siblings})

    def tree(self, body: bytes, repo: str, revision: str, path: str = "") -> None:
        stored_repo = self._repo(repo)
        commit = self._commit(stored_repo, revision)
        entries = []
        for name, stored in sorted(stored_repo.commits[commit].items()):
            if path and not name.startswith(path.rstrip("/") + "/"):
                continue
            entry = {"type": "file", "oid": stored.blob_id, "size": len(stored.data), "path": name}
            if stored.lfs:
                entry["lfs"] = {"oid": stored.sha256, "size": len(stored.data), "pointerSize": 134}
            entries.append(entry)
        self._json(entries)

    def tag(self, body: bytes, repo: str, revision: str) -> None:
        self._require_token()
        stored_repo = self._repo(repo)
        commit = self._commit(stored_repo, revision)
        name = json.loads(body)["tag"]
        if name in stored_repo.tags:
            raise _HttpError(409, f"tag {name} already exists")
        stored_repo.tags[name] = commit
        self._json({})

    # -- uploads -------------------------------------------------------------------------------
    def preupload(self, body: bytes, repo: str, revision: str) -> None:
        self._require_token()
        stored_repo = self._repo(repo)
        tree = stored_repo.commits[self._commit(stored_repo, revision)]
        files = []
        for item in json.loads(body)["files"]:
            lfs = self.server_state.is_lfs(item["path"], item["size"])
            existing = tree.get(item["path"])
            oid = None if existing is None else (existing.sha256 if lfs else existing.blob_id)
            files.append(
                {"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        self._json({"files": files})

    def lfs_batch(self, body: bytes, repo: str) -> None:
        self._require_token()
        self._repo(repo)
        request = json.loads(body)
        if request.get("operation") != "upload" or "basic" not in request.get("transfers", ["basic"]):
            raise _HttpError(422, "only basic LFS uploads are supported")
        objects = []
        for item in request["objects"]:
            entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.server_state.lfs_objects:
                entry["actions"] = {
                    "upload": {"href": f"{self.server_state.url}/lfs/{item['oid']}"},
                    "verify": {"href": f"{self.server_state.url}/lfs/verify"},
                }
            objects.append(entry)
        self._json({"transfer": "basic", "objects": objects}, headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, body: bytes, oid: str) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            raise _HttpError(400, "uploaded content does not match its sha256")
        self.server_state.lfs_objects[oid] = body
        self._send(200)

    def lfs_verify(self, body: bytes) -> None:
        request = json.loads(body)
        stored = self.server_state.lfs_objects.get(request["oid"])
        if stored is None or len(stored) != request["size"]:
            raise _HttpError(404, "object not uploaded")
        self._json({})

    def commit(self, body: bytes, repo: str, revision: str) -> None:
        self._require_token()
        stored_repo = self._repo(repo)
        if revision not in stored_repo.branches:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        tree = dict(stored_repo.commits[stored_repo.branches[revision]])
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                tree[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                data = self.server_state.lfs_objects.get(value["oid"])
                if data is None:
                    raise _HttpError(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                tree[value["path"]] = StoredFile(data, lfs=True)
            elif key == "deletedFile":
                tree.pop(value["path"], None)
            elif key != "header":
                raise _HttpError(400, f"unsupported commit operation {key}")
        with self.server_state._lock:
            commit = HubServer._store_commit(stored_repo, stored_repo.branches[revision], tree, header["summary"])
            stored_repo.branches[revision] = commit
        url = f"{self.server_state.url}/{repo}/commit/{commit}"
        self._json({"commitUrl": url, "commitOid": commit, "pullRequestUrl": None, "success": True})

    def no_xet(self, body: bytes, **_: str) -> None:
        raise _HttpError(501, "this stand-in Hub has no Xet storage; disable Xet (HF_HUB_DISABLE_XET=1)")


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers


_ROUTES = [
    ("POST", r"/api/repos/create", _Handler.create),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("GET", rf"/api/models/{REPO}/revision/(?P<revision>[^/]+)", _Handler.revision_info),
    ("GET", rf"/api/models/{REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?", _Handler.tree),
    ("POST", rf"/api/models/{REPO}/tag/(?P<revision>[^/]+)", _Handler.tag),
    ("POST", rf"/api/models/{REPO}/preupload/(?P<revision>[^/]+)", _Handler.preupload),
    ("POST", rf"/api/models/{REPO}/commit/(?P<revision>[^/]+)", _Handler.commit),
    ("GET", rf"/api/models/{REPO}/xet-(?:read|write)-token/(?P<revision>[^/]+)", _Handler.no_xet),
    ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    ("PUT", r"/lfs/(?P<oid>[0-9a-f]{64})", _Handler.lfs_put),
    ("POST", r"/lfs/verify", _Handler.lfs_verify),
    ("HEAD", rf"/{REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)", _Handler.resolve_file),
    ("GET", rf"/{REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)", _Handler.resolve_file),
]


def start_local_hub(monkeypatch: pytest.MonkeyPatch, home: Path, *, lfs: bool = True) -> HubServer:
    """Start a `HubServer` and point huggingface_hub (this process and subprocesses) at it.

    ``home`` becomes HF_HOME (cache and token file inside it); HF_TOKEN is the server's token.
    ``lfs=True``: ``*.safetensors`` are LFS files and the client's Xet support is off (LFS batch
    + PUT); ``lfs=False``: every file is regular and the client keeps its default (Xet-enabled)
    upload pipeline.
    """
    from huggingface_hub import constants

    server = HubServer(lfs_patterns=("*.safetensors",) if lfs else ()).start()
    cache = home / "hub"
    settings = {
        "ENDPOINT": server.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": server.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": lfs,
    }
    for name, value in settings.items():
        monkeypatch.setattr(constants, name, value)
    environment = {
        "HF_ENDPOINT": server.url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_TOKEN": server.token,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    if lfs:
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    else:
        monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    return server


@pytest.fixture
def local_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A running `HubServer` (LFS for safetensors, client Xet off) that the client talks to; stopped afterwards."""
    server = start_local_hub(monkeypatch, tmp_path / "hf")
    yield server
    server.stop()


def set_offline(monkeypatch: pytest.MonkeyPatch, offline: bool = True) -> None:
    """Switch huggingface_hub's offline mode (HF_HUB_OFFLINE) in this process."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")


def make_trained_model(num_members: int = 3, seed: int = 0):
    """A small reloadable ensemble (random squeezenet1_1 backbone) that looks trained: every member's
    parameters differ from the defaults and the centre-bias template is not the default one."""
    import torch

    from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig

    backbone = BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None)
    generator = torch.Generator().manual_seed(seed)
    model = DeepGaze(DeepGazeConfig(backbone=backbone, num_members=num_members))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2 + parameter)
        model.finalizer.sigma.copy_(torch.linspace(3.0, 9.0, num_members))
        model.finalizer.centerbias_weight.copy_(torch.linspace(0.5, 1.5, num_members))
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 48), indexing="ij")
    model.set_centerbias(-((rows - 0.3) ** 2) / 0.1 - (cols + 0.2) ** 2 / 0.4)  # off-centre, anisotropic
    return model.eval()
