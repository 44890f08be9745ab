"""Where reports live: a local directory or ``s3://bucket/prefix``, written atomically.

Paths inside a store are *relpaths*: ``/``-separated, relative to the reports root
(``detections/dt=2024-05-01/<key>.parquet``). Every write is all-or-nothing: locally a temp
file in the same directory then ``os.replace``; on S3 a single ``PutObject``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from storage.atomic import TMP_PREFIX, write_bytes_atomic
from storage.s3 import get_bytes, put_bytes, s3_client
from storage.uri import S3Uri, is_s3

__all__ = ["LocalStore", "S3Store", "Store", "check_reports_root", "open_store"]


def _check_relpath(relpath: str) -> str:
    parts = relpath.split("/")
    if not relpath or relpath.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            f"relpath {relpath!r}: expected a relative '/'-separated path without '.', '..' or '//'"
        )
    return relpath


class Store(ABC):
    """A reports root: ``LocalStore`` or ``S3Store``; build one with ``open_store``."""

    root: str

    @abstractmethod
    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Write ``data`` at ``relpath`` atomically (readers see the old object or the new one)."""

    @abstractmethod
    def read_bytes(self, relpath: str) -> bytes:
        """The bytes at ``relpath``; ``FileNotFoundError`` naming the URI if absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Sorted relpaths of all objects whose relpath starts with ``prefix`` (recursive)."""

    @abstractmethod
    def exists(self, relpath: str) -> bool:
        """Whether an object exists at ``relpath``."""

    @abstractmethod
    def uri(self, relpath: str = "") -> str:
        """A URI (local absolute path or ``s3://…``) DuckDB, GeoPandas and GDAL can open."""

    @abstractmethod
    def delete(self, relpaths: list[str]) -> None:
        """Remove the objects at ``relpaths``; ones already gone are not an error."""

    @abstractmethod
    def arrow_paths(self, relpaths: list[str]) -> tuple[Any, list[str]]:
        """``(pyarrow.fs.FileSystem, paths)`` for ``pyarrow.dataset`` to read ``relpaths`` lazily
        (only the columns and row groups asked for)."""

    def read_many(self, relpaths: list[str], max_workers: int = 8) -> list[bytes]:
        """``read_bytes`` for several relpaths (in order), concurrently where it helps."""
        if len(relpaths) <= 1:
            return [self.read_bytes(p) for p in relpaths]
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            return list(pool.map(self.read_bytes, relpaths))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"


class LocalStore(Store):
    """Reports under a local directory (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.path = Path(root).expanduser().resolve()
        self.root = str(self.path)

    def _path(self, relpath: str) -> Path:
        return self.path.joinpath(*_check_relpath(relpath).split("/"))

    def write_bytes(self, relpath: str, data: bytes) -> None:
        write_bytes_atomic(self._path(relpath), data)

    def read_bytes(self, relpath: str) -> bytes:
        path = self._path(relpath)
        try:
            return path.read_bytes()
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{self.uri(relpath)!r}: no such report object") from err

    def list(self, prefix: str = "") -> list[str]:
        # Walk only the deepest directory that the prefix names, then filter by string prefix.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.path.joinpath(*base.split("/")) if base else self.path
        if not start.is_dir():
            return []
        out = []
        for dirpath, _dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self.path).as_posix()
            for name in filenames:
                if name.startswith(TMP_PREFIX):  # a write in progress, or one killed half way
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if rel.startswith(prefix):
                    out.append(rel)
        return sorted(out)

    def exists(self, relpath: str) -> bool:
        return self._path(relpath).is_file()

    def uri(self, relpath: str = "") -> str:
        return str(self._path(relpath)) if relpath else self.root

    def delete(self, relpaths: list[str]) -> None:
        for relpath in relpaths:
            self._path(relpath).unlink(missing_ok=True)

    def arrow_paths(self, relpaths: list[str]) -> tuple[Any, list[str]]:
        from pyarrow.fs import LocalFileSystem

        return LocalFileSystem(), [str(self._path(p)) for p in relpaths]


class S3Store(Store):
    """Reports under ``s3://bucket/prefix`` through boto3.

    The endpoint (``AWS_ENDPOINT_URL``), region and credentials come from boto3's own
    configuration chain; nothing secret is stored on the object or logged. The client is
    made lazily and not pickled, so a store can be shipped to Ray workers.
    """

    def __init__(self, root: str):
        base = S3Uri.parse(root)
        self.bucket = base.bucket
        self.prefix = base.key.strip("/")
        self.root = str(base.child(self.prefix)).rstrip("/")
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client()
        return self._client

    def _key(self, relpath: str) -> str:
        _check_relpath(relpath)
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def _object(self, relpath: str) -> S3Uri:
        return S3Uri(self.bucket, self._key(relpath))

    def write_bytes(self, relpath: str, data: bytes) -> None:
        put_bytes(self._object(relpath), data, self.client)

    def read_bytes(self, relpath: str) -> bytes:
        try:
            return get_bytes(self._object(relpath), self.client)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{self.uri(relpath)!r}: no such report object") from err

    def list(self, prefix: str = "") -> list[str]:
        root_prefix = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        out = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=root_prefix + prefix):
            out.extend(obj["Key"][len(root_prefix) :] for obj in page.get("Contents", ()))
        return sorted(out)

    def exists(self, relpath: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(relpath))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def uri(self, relpath: str = "") -> str:
        return str(self._object(relpath)) if relpath else self.root

    def delete(self, relpaths: list[str]) -> None:
        for start in range(0, len(relpaths), 1000):  # DeleteObjects takes up to 1000 keys
            keys = [{"Key": self._key(p)} for p in relpaths[start : start + 1000]]
            resp = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
            )
            if resp.get("Errors"):
                err = resp["Errors"][0]
                raise OSError(
                    f"{self.uri(relpaths[start])!r}…: cannot delete {len(resp['Errors'])} "
                    f"object(s), first {err.get('Key')!r}: {err.get('Code')} {err.get('Message')}"
                )

    def arrow_paths(self, relpaths: list[str]) -> tuple[Any, list[str]]:
        from urllib.parse import urlsplit

        import boto3
        from pyarrow.fs import S3FileSystem

        # pyarrow's own S3 client, given the credentials, region and endpoint boto3 resolves.
        creds = boto3.session.Session().get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
        endpoint = urlsplit(self.client.meta.endpoint_url)
        fs = S3FileSystem(
            access_key=frozen.access_key if frozen else None,
            secret_key=frozen.secret_key if frozen else None,
            session_token=frozen.token if frozen else None,
            anonymous=frozen is None,
            region=self.client.meta.region_name,
            scheme=endpoint.scheme or "https",
            endpoint_override=endpoint.netloc,
        )
        return fs, [f"{self.bucket}/{self._key(p)}" for p in relpaths]


def check_reports_root(root: str, field: str) -> None:
    """``ValueError`` naming ``field`` (e.g. ``"ReportConfig.reports"``) when ``root`` is empty."""
    if not root:
        raise ValueError(f"{field} is empty: give a directory or s3://bucket/prefix")


def open_store(root: str | os.PathLike[str]) -> Store:
    """A ``Store`` for ``root``: ``s3://bucket[/prefix]``, ``file:///dir`` or a local directory."""
    text = os.fspath(root)
    if is_s3(text):
        return S3Store(text)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        raise ValueError(
            f"{text!r}: unsupported reports root; expected a local directory or s3://bucket/prefix"
        )
    return LocalStore(text)
