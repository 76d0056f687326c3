"""Publishing a saved model to the Hugging Face Hub, and the registry pin that comes out of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from ..errors import PublishError
from ..model.files import hub_model_files
from ..version import __version__
from .integrity import file_sha256
from .loader import load


@dataclass(frozen=True)
class Publication:
    """A pushed model: where it is, the commit to pin and the sha256 of the files loading reads."""

    repo_id: str
    revision: str
    commit_url: str
    files: dict[str, str]
    tag: str | None = None

    def registry_pin(self) -> str:
        """The ``hub:`` block of a registry entry (``hub_configs/<name>.yaml``) for this release, as YAML."""
        hub = {"repo_id": self.repo_id, "revision": self.revision, "files": dict(self.files)}
        return yaml.safe_dump({"hub": hub}, sort_keys=False)


def push(
    model_dir: str | Path,
    repo_id: str,
    *,
    revision_tag: str | None = None,
    private: bool | None = None,
    branch: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> Publication:
    """Upload the model saved in ``model_dir`` to the Hub repo ``repo_id`` (created if needed).

    The directory is loaded strictly first, so only a model that loads is published; the upload
    holds ``config.json``, ``model.safetensors`` and a freshly generated README.md. The new commit
    can be tagged ``revision_tag``. The pushed files are then downloaded at that commit and hashed:
    the returned `Publication` holds what a registry entry pins. Needs a token with write access
    (``hf auth login``, ``HF_TOKEN`` or ``token=``).
    """
    model = load(Path(model_dir))
    message = commit_message or f"Upload DeepGaze model with deepgaze-hub {__version__}"
    try:
        commit = model.push_to_hub(repo_id, private=private, branch=branch, commit_message=message, token=token)
        repo_id = commit.repo_url.repo_id
        if revision_tag:
            HfApi(token=token).create_tag(
                repo_id, tag=revision_tag, revision=commit.oid, tag_message=f"deepgaze-hub {__version__}"
            )
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        hint = (
            "log in with `hf auth login` or set HF_TOKEN to a token with write access to that namespace"
            if status in (401, 403)
            else "check the repo id and tag, then run the command again"
        )
        raise PublishError(f"the Hub refused the push to {repo_id} (HTTP {status}): {hint}. ({error})") from None
    pushed = hub_model_files(repo_id, revision=commit.oid, token=token)
    files = {path.name: file_sha256(path) for path in (pushed.config, pushed.weights)}
    return Publication(repo_id, commit.oid, commit.commit_url, files, revision_tag)
