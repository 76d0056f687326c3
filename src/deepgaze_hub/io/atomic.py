"""Atomic file output: a file appears complete under its final name or not at all.

Everything the package writes goes through here, so an interrupted job never leaves a truncated
output behind and a rerun can treat every existing output as finished. Every file gets the mode a
plain ``open(path, "w")`` would give it, ``0o666 & ~umask`` (e.g. 0644 under the usual umask 022),
whatever the writer did to the temporary file (safetensors and ``tempfile.mkstemp`` create 0600).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

#: Temporary files are named ``.<final name>.<12 hex digits>.partial`` beside their final name.
PARTIAL_SUFFIX = ".partial"
_TAG_LENGTH = 12
_PARTIAL_NAME = re.compile(r"\..+\.[0-9a-f]{%d}%s" % (_TAG_LENGTH, re.escape(PARTIAL_SUFFIX)))


def is_partial_name(name: str) -> bool:
    """Whether a file name is one of `atomic_path`'s temporary files."""
    return _PARTIAL_NAME.fullmatch(name) is not None


def remove_stale_partials(folder: str | os.PathLike, older_than_s: float = 60.0) -> list[Path]:
    """Delete the temporary files that killed writers left under ``folder``; return their paths.

    Only regular files named like `atomic_path`'s temporaries (see `is_partial_name`) and last
    modified more than ``older_than_s`` seconds ago (so that a writer still running elsewhere
    keeps its file) are removed; symbolic links are neither followed nor removed. A missing
    ``folder`` is not an error.
    """
    removed: list[Path] = []
    deadline = time.time() - older_than_s
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if not is_partial_name(name):
                continue
            path = Path(root, name)
            try:
                info = path.lstat()
                if path.is_symlink() or not path.is_file() or info.st_mtime > deadline:
                    continue
                path.unlink()
            except FileNotFoundError:  # its writer finished or removed it meanwhile
                continue
            removed.append(path)
    return removed


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux: /proc/self/status).

    Elsewhere it falls back to setting and restoring it with `os.umask` (two calls; another thread
    creating a file between them would get the temporary umask 0o077, i.e. a more private file).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permission bits a newly created regular file gets: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    For writers that want a file name (h5py, safetensors, PIL). Before the rename the file gets
    the mode `new_file_mode` (writers such as safetensors recreate it with mode 0600). On error
    the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.parent / f".{path.name}.{uuid.uuid4().hex[:_TAG_LENGTH]}{PARTIAL_SUFFIX}"
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp_path
        os.chmod(tmp_path, new_file_mode())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a file for writing that only replaces ``path`` once it is complete and flushed."""
    if mode not in ("w", "wb"):
        raise ValueError("atomic_open writes only: mode must be 'w' or 'wb'")
    with atomic_path(path) as tmp:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically (no ``.npy`` suffix is appended)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
