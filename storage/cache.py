"""The per-user whalescan cache: downloaded objects, extracted bundles, exported artefacts.

Lives in ``$XDG_CACHE_HOME/whalescan`` (default ``~/.cache/whalescan``), so jobs of different
users on one node never share (or fight over the permissions of) one ``/tmp`` folder. Entries
are named by a content key and published atomically (:mod:`storage.atomic`), so several Ray
actors and several jobs can fill the same entry at once; a writer killed half way leaves only a
hidden temporary. An entry that still fails validation (damaged on disk, or left by an older
whalescan) is evicted and built again once, instead of failing every later run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage.atomic import TMP_PREFIX, publish_dir, temp_dir, write_bytes_atomic
from storage.uri import S3Uri

__all__ = [
    "cache_dir",
    "cache_root",
    "cached_dir",
    "cached_file",
    "evict",
    "fetch_cached",
    "write_cached_bytes",
]

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/whalescan``, else ``~/.cache/whalescan`` (read at each call)."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"  # XDG: relative → ignore
    return root / "whalescan"


STALE_S = 86400.0  # a temporary this old was left by a writer that died: remove it


def cache_dir(kind: str) -> Path:
    """The cache folder for one kind of entry (``bundles``, ``artifacts``…), created if needed.

    Temporaries that writers killed half way left behind (older than ``STALE_S``) are removed.
    """
    if not kind or "/" in kind or kind.startswith("."):
        raise ValueError(f"cache kind {kind!r}: expected a plain folder name")
    d = cache_root() / kind
    d.mkdir(parents=True, exist_ok=True)
    _sweep(d)
    return d


def _sweep(d: Path) -> None:
    cutoff = time.time() - STALE_S
    for tmp in d.glob(TMP_PREFIX + "*"):
        try:
            if tmp.lstat().st_mtime >= cutoff:
                continue
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        except FileNotFoundError:
            continue  # another process swept it first


def evict(entry: Path) -> None:
    """Remove a cache entry (file or directory); a concurrent reader keeps its open files."""
    with temp_dir(entry) as aside:
        try:
            os.rename(entry, aside / "evicted")  # atomic: nobody sees a half-deleted entry
        except FileNotFoundError:
            return  # another process evicted it first
    log.warning("cache entry %s failed validation; evicted", entry)


Fill = Callable[[Path], None]  # writes an entry at the (temporary) path it is given
Check = Callable[[Path], bool]  # whether an existing entry is sound


def _always(entry: Path) -> bool:
    return True


def _checked(kind: str, name: str, exists: Check, valid: Check) -> Path:
    """The path of entry ``name`` of ``kind``; an existing entry that fails ``valid`` is evicted."""
    entry = cache_dir(kind) / name
    if exists(entry) and not valid(entry):
        evict(entry)
    return entry


def cached_dir(kind: str, key: str, fill: Fill, valid: Check = _always) -> Path:
    """The directory entry ``key`` of ``kind``, built once by ``fill(tmp_dir)`` if missing.

    ``valid(path)`` checks an existing entry; a failing one is evicted and rebuilt once.
    """
    return publish_dir(_checked(kind, key, Path.is_dir, valid), fill)


def cached_file(kind: str, name: str, fill: Fill, valid: Check = _always) -> Path:
    """The file entry ``name`` of ``kind``, written once by ``fill(tmp_path)`` if missing.

    ``fill`` writes the file at the path it is given (e.g. a download); it is then renamed into
    place. ``valid`` as in :func:`cached_dir`.
    """
    entry = _checked(kind, name, Path.is_file, valid)
    if entry.is_file():
        return entry
    with temp_dir(entry) as tmp:
        fill(tmp / name)
        os.replace(tmp / name, entry)
    return entry


def write_cached_bytes(kind: str, name: str, data: bytes) -> Path:
    """Store ``data`` as file entry ``name`` of ``kind`` unless present; return its path."""
    entry = cache_dir(kind) / name
    return entry if entry.is_file() else write_bytes_atomic(entry, data)


def fetch_cached(uri: S3Uri, cache: str, suffix: str = "", client: Any = None) -> Path:
    """A local copy of the object's current version, downloaded once per ETag into ``cache``.

    One HEAD each call (so a replaced object is fetched again); ``StorageError`` naming the URI
    when the object cannot be reached. Concurrent fetches each download to their own temporary
    name; a cached copy whose size differs from the object's (truncated) is fetched again.
    """
    from storage.s3 import download, head, s3_client

    client = client or s3_client()
    version = head(uri, client)
    name = hashlib.sha256(f"{uri}@{version.etag}".encode()).hexdigest()[:16] + suffix
    return cached_file(
        cache,
        name,
        lambda tmp: download(uri, tmp, client),
        valid=lambda p: version.size is None or p.stat().st_size == version.size,
    )
