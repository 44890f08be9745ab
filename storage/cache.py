"""Local caches of downloaded objects: one file per object version, kept between runs."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from storage.s3 import download, head, s3_client
from storage.uri import S3Uri

__all__ = ["cache_dir", "fetch_cached"]


def cache_dir(name: str) -> Path:
    """The cache directory ``<tmp>/whalescan-<name>`` (created if missing)."""
    d = Path(tempfile.gettempdir()) / f"whalescan-{name}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def fetch_cached(uri: S3Uri, cache: str, suffix: str = "", client: Any = None) -> Path:
    """A local copy of the object's current version, downloaded once per ETag into ``cache``.

    One HEAD each call (so a replaced object is fetched again); ``StorageError`` naming the URI
    when the object cannot be reached.
    """
    client = client or s3_client()
    etag = head(uri, client).etag
    name = hashlib.sha256(f"{uri}@{etag}".encode()).hexdigest()[:16] + suffix
    target = cache_dir(cache) / name
    if not target.exists():
        download(uri, target, client)
    return target
