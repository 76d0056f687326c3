"""The DeepGaze authors' release files as models: read them safely, convert them once, cache the result.

The authors publish DeepGaze I and DeepGaze IIE as PyTorch state dicts on GitHub releases, with no
checksum and no licence (see docs/design.md). This module turns such a file into a normal model
directory (``config.json``, ``model.safetensors``, a model card and ``source.json``):

* `read_release_state_dict` reads a ``.pth`` with ``torch.load(weights_only=True)`` only (a file
  that needs a full unpickle is refused) and checks every key and shape against the published
  layout (`deepgaze_hub.hub.official.check_layout`).
* `read_centerbias` reads the authors' ``centerbias_mit1003.npy`` without pickles and checks it is a
  finite (1024, 1024) float64 array (a natural-log density).
* `convert_release` runs the converter (`deepgaze_hub.hub.official.convert_official`) and attaches
  the model card (provenance, sha256 of the source file, citation, licence situation);
  `write_model_directory` saves it atomically (a temporary directory renamed into place).
* `load_release` is what ``deepgaze_hub.load("deepgaze2e")`` does for a registry entry with a
  ``release:`` section: download (resumable, cached, see `deepgaze_hub.io.download`), print the
  sha256 and how to pin it if none is pinned, convert once into
  ``<cache root>/converted/<name>-<sha256[:12]>/`` and load that directory; later calls read only
  that directory (no network, no pickle).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import sys
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..errors import ConfigError, WeightsError
from ..io.atomic import atomic_write_text
from ..io.cache import cache_root
from ..io.download import download_release, exclusive, file_sha256
from ..io.typed import bounded, validate
from ..model.card import ModelCardInfo
from ..model.deepgaze import DeepGaze
from ..version import __version__
from . import official

#: Subfolder of the cache root holding converted release files.
CONVERTED_FOLDER = "converted"
#: Provenance file written beside config.json in a converted directory.
SOURCE_FILE = "source.json"
#: Shape and dtype of the authors' centre-bias template (a natural-log density).
CENTERBIAS_SHAPE = (1024, 1024)
CENTERBIAS_DTYPE = np.float64
#: Largest centre-bias file read (the real one is 8 MB).
MAX_CENTERBIAS_BYTES = 64 * 1024**2

LICENCE_STATEMENT = (
    "the authors give no licence for these weights (their repository has none). Use them for "
    "research at your own discretion, and do not re-host them: everyone downloads them from the "
    "authors' release"
)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_URL = re.compile(r"https?://\S+")
_announced: set[tuple[str, str]] = set()  # (url, sha256) whose "how to pin" was printed


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release: its URL and pinned sha256 (None: not pinned, nothing checked)."""

    url: str = bounded(min_len=8, max_len=2000, help="https URL of the file")
    sha256: str | None = bounded(None, min_len=64, max_len=64, help="pinned sha256 (64 hex digits) or null")

    def __post_init__(self) -> None:
        validate(self, "release file")

    def problems(self, where: str) -> list[str]:
        if not _URL.fullmatch(self.url):
            return [f"{where}.url must be an http(s) URL, got {self.url!r}"]
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            return [f"{where}.sha256 must be 64 lowercase hex digits or null, got {self.sha256!r}"]
        return []


@dataclass(frozen=True)
class ReleaseSource:
    """A registry entry's ``release:`` section: the authors' weight file and how to convert it."""

    url: str = bounded(min_len=8, max_len=2000, help="https URL of the .pth release file")
    converter: Literal["deepgaze1", "deepgaze2e"] = bounded(help="which published layout the file has")
    sha256: str | None = bounded(None, min_len=64, max_len=64, help="pinned sha256 of the file, or null")
    centerbias: ReleaseFile | None = bounded(None, help="the centre-bias .npy file (url, sha256)")

    def __post_init__(self) -> None:
        validate(self, "release")

    @property
    def weights(self) -> ReleaseFile:
        return ReleaseFile(self.url, self.sha256)

    def problems(self) -> list[str]:
        found = self.weights.problems("release")
        if self.centerbias is not None:
            found += self.centerbias.problems("release.centerbias")
        return found


# ------------------------------------------------------------------------------------------------
# reading


def read_release_state_dict(path: str | Path, kind: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, read with ``torch.load(weights_only=True)`` and layout-checked.

    Raises `WeightsError` naming the file for a missing file, a file that is not a PyTorch file, a
    file that needs a full unpickle (refused: it holds more than tensors), or a layout other than
    the published one of ``kind`` (the message lists missing, unexpected and misshapen keys).
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise WeightsError(f"{where}: no such file; pass the path of {official.FILE_NAMES.get(kind, kind)}")
    try:
        with warnings.catch_warnings():  # torch warns about legacy pickle protocols, then reads them fine
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error):
            raise WeightsError(
                f"{where}: refused: loading it would need a full unpickle (it holds objects other than "
                "tensors, which could run code); the authors' files load without one, so this is not "
                f"{official.FILE_NAMES.get(kind, kind)}"
            ) from None
        raise WeightsError(f"{where}: not a PyTorch weights file ({_first_line(error)})") from None
    except Exception as error:  # noqa: BLE001 - torch.load on arbitrary bytes raises many kinds (KeyError, ...)
        raise WeightsError(f"{where}: not a PyTorch weights file ({_first_line(error)})") from None
    official.check_layout(state, kind, where)
    return dict(state)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def read_centerbias(path: str | Path) -> np.ndarray:
    """The authors' centre-bias template: a finite (1024, 1024) float64 natural-log density.

    Read with ``np.load(allow_pickle=False)``; `WeightsError` names the file and what is wrong.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise WeightsError(f"{where}: no such file; pass the authors' centerbias_mit1003.npy")
    if path.stat().st_size > MAX_CENTERBIAS_BYTES:
        raise WeightsError(f"{where}: {path.stat().st_size} bytes, larger than a centre bias can be; refused")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise WeightsError(f"{where}: not a NumPy .npy array without pickles ({error})") from None
    if not isinstance(array, np.ndarray):
        raise WeightsError(f"{where}: expected one .npy array, got {type(array).__name__}")
    if array.shape != CENTERBIAS_SHAPE or array.dtype != CENTERBIAS_DTYPE:
        raise WeightsError(
            f"{where}: expected a {CENTERBIAS_SHAPE} float64 log density (centerbias_mit1003.npy), "
            f"got shape {array.shape} dtype {array.dtype}"
        )
    if not np.isfinite(array).all():
        raise WeightsError(f"{where}: the centre bias has {int((~np.isfinite(array)).sum())} non-finite values")
    return array


# ------------------------------------------------------------------------------------------------
# converting and writing


def release_card_info(
    base: ModelCardInfo | None, kind: str, source: str, sha256: str, centerbias: tuple[str, str] | None
) -> ModelCardInfo:
    """``base`` (a registry entry's card) with the provenance of one conversion and the licence.

    ``source``: URL or file name converted; ``centerbias``: (URL or file name, sha256) or None.
    """
    base = base or ModelCardInfo(title=official.FILE_NAMES.get(kind, kind))
    provenance = (
        f"Converted by deepgaze-hub {__version__} (`deepgaze-hub convert official {kind}`) from the "
        f"authors' release file {source}, sha256 `{sha256}`"
    )
    if centerbias is not None:
        provenance += f", with the centre bias {centerbias[0]}, sha256 `{centerbias[1]}`"
    provenance += ". The weights were not retrained; only their layout was changed."
    training = "\n\n".join(text for text in (provenance, (base.training or "").strip()) if text)
    licenses = {"weights": "other", "Converted weights (all files of this model)": LICENCE_STATEMENT}
    licenses.update({what: terms for what, terms in base.licenses.items() if what != "weights"})
    return replace(base, training=training, licenses=licenses)


def convert_release(
    kind: str,
    weights: str | Path,
    *,
    centerbias: str | Path | None = None,
    card: ModelCardInfo | None = None,
    source: str | None = None,
) -> tuple[DeepGaze, dict[str, Any]]:
    """Read, check and convert the release file ``weights`` of ``kind``; return (model, provenance).

    ``centerbias``: the authors' ``.npy`` template (None: the converter's default). ``card``: the
    registry entry's card, completed with provenance. ``source``: what to name the file as in the
    card (its URL; default: its file name). The provenance mapping is what `source.json` holds.
    """
    if kind not in official.KINDS:
        raise ConfigError(f"unknown release kind {kind!r}; use one of {', '.join(official.KINDS)}")
    weights = Path(weights)
    state = read_release_state_dict(weights, kind)
    sha256 = file_sha256(weights)
    template = read_centerbias(centerbias) if centerbias is not None else None
    centerbias_info = (Path(centerbias).name, file_sha256(centerbias)) if centerbias is not None else None
    model = official.convert_official(kind, state, centerbias=template, where=str(weights))
    del state
    model.card_info = release_card_info(card, kind, source or weights.name, sha256, centerbias_info)
    provenance = _provenance_key(kind, sha256, centerbias_info[1] if centerbias_info else None)
    provenance["source"] = source or weights.name
    return model.eval(), provenance


def write_model_directory(model: DeepGaze, out: str | Path, provenance: dict[str, Any], *, overwrite: bool) -> Path:
    """Save ``model`` (``save_pretrained``) and ``source.json`` into ``out``, atomically.

    The files are written into a temporary sibling directory that is then renamed to ``out``, so
    ``out`` is either absent, the old directory, or complete. An existing non-empty ``out`` is
    refused (`ConfigError`) unless ``overwrite``.
    """
    out = check_output_directory(out, overwrite=overwrite)
    with _staging_directory(out) as staging:
        model.save_pretrained(staging)
        atomic_write_text(staging / SOURCE_FILE, json.dumps(provenance, indent=2) + "\n")
        _replace_directory(staging, out)
    return out


def check_output_directory(out: str | Path, *, overwrite: bool) -> Path:
    """``out`` as a path if a model directory may be written there, else `ConfigError` saying why."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    return out


@contextlib.contextmanager
def _staging_directory(out: Path) -> Iterator[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_directory(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an existing ``out`` is moved aside first, then deleted."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.old"
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None and not out.exists():
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# registry entries with a release: section


def converted_directory(name: str, sha256: str, cache_dir: str | Path | None = None) -> Path:
    """Where the conversion of release file ``sha256`` of registry model ``name`` is cached."""
    return cache_root(cache_dir) / CONVERTED_FOLDER / f"{name}-{sha256[:12]}"


def load_release(
    name: str,
    release: ReleaseSource,
    card: ModelCardInfo,
    *,
    members: Sequence[int] | None = None,
    map_location: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    entry_path: str | Path | None = None,
    **overrides: Any,
) -> DeepGaze:
    """The registry model ``name`` made from the authors' release file (see the module docstring).

    With every sha256 pinned, an existing conversion is used without touching the release files;
    otherwise the release files are downloaded if not cached (offline mode: `WeightsError` saying
    where to put them) and hashed, and the conversion for those bytes is used or made.
    """
    expected = _expected_provenance(release)
    if expected is not None:
        directory = _usable_conversion(converted_directory(name, expected["sha256"], cache_dir), expected)
        if directory is not None:
            return _load_directory(directory, members, map_location, overrides)
    weights, sha256 = download_release(release.url, sha256=release.sha256, cache_dir=cache_dir)
    centerbias = cb_sha = None
    if release.centerbias is not None:
        centerbias, cb_sha = download_release(
            release.centerbias.url, sha256=release.centerbias.sha256, cache_dir=cache_dir
        )
    directory = converted_directory(name, sha256, cache_dir)
    wanted = _provenance_key(release.converter, sha256, cb_sha)
    if _usable_conversion(directory, wanted) is None:
        directory.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(directory.with_name(directory.name + ".lock"), f"converting {release.url}"):
            if _usable_conversion(directory, wanted) is None:  # another process may have done it meanwhile
                _announce(name, release.url, sha256, release.sha256, entry_path, "release.sha256")
                if release.centerbias is not None:
                    field = "release.centerbias.sha256"
                    _announce(name, release.centerbias.url, cb_sha, release.centerbias.sha256, entry_path, field)
                _convert_into(name, release, weights, centerbias, card, directory)
    return _load_directory(directory, members, map_location, overrides)


def _convert_into(name: str, release: ReleaseSource, weights: Path, centerbias, card, directory: Path) -> None:
    print(f"deepgaze-hub: converting {release.url} for {name} (once) into {directory}", file=sys.stderr)
    model, provenance = convert_release(
        release.converter, weights, centerbias=centerbias, card=card, source=release.url
    )
    if release.centerbias is not None:
        provenance["centerbias_source"] = release.centerbias.url
    write_model_directory(model, directory, provenance, overwrite=True)


def _expected_provenance(release: ReleaseSource) -> dict[str, Any] | None:
    """What source.json must say, when every file is pinned (None otherwise)."""
    if release.sha256 is None or (release.centerbias is not None and release.centerbias.sha256 is None):
        return None
    centerbias = release.centerbias.sha256 if release.centerbias is not None else None
    return _provenance_key(release.converter, release.sha256, centerbias)


def _provenance_key(converter: str, sha256: str, centerbias_sha256: str | None) -> dict[str, Any]:
    """The entries of source.json that must match for a cached conversion to be used."""
    return {
        "converter": converter,
        "sha256": sha256,
        "centerbias_sha256": centerbias_sha256,
        "deepgaze_hub_version": __version__,
    }


def _usable_conversion(directory: Path, wanted: dict[str, Any]) -> Path | None:
    """``directory`` if it holds a conversion whose source.json matches ``wanted``, else None."""
    try:
        recorded = json.loads((directory / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or any(recorded.get(key) != value for key, value in wanted.items()):
        return None
    return directory


def _load_directory(directory: Path, members, map_location, overrides: dict[str, Any]) -> DeepGaze:
    return DeepGaze.from_pretrained(directory, members=members, map_location=map_location, **overrides)


def _announce(name: str, url: str, sha256: str, pinned: str | None, entry_path, field: str) -> None:
    """Print the sha256 of an unpinned release file and how to pin it (once per process and file;
    called when a file is converted, i.e. after its download)."""
    if pinned is not None or (url, sha256) in _announced:
        return
    _announced.add((url, sha256))
    entry = entry_path or f"hub_configs/{name}.yaml"
    print(
        f"deepgaze-hub: {url} has sha256 {sha256} (the authors publish no checksum, so nothing was "
        f"verified). To pin it, set `{field}: {sha256}` in {entry}; a pinned sha256 is then enforced.",
        file=sys.stderr,
    )
