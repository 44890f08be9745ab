"""S3 operations through boto3: one client configuration, HEAD, listing, get, put and download.

Everything follows the standard AWS configuration, read at call time (never at import):
credentials from the usual chain (environment, shared files, ``AWS_PROFILE``, web identity,
instance metadata), ``AWS_REGION``, and ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for
S3-compatible servers such as MinIO, Ceph or moto. boto3 reads those itself; nothing secret is
kept on any object here or logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.atomic import atomic_path
from storage.uri import S3Uri

__all__ = [
    "ObjectHead",
    "StorageError",
    "client_config",
    "download",
    "endpoint_url",
    "get_bytes",
    "head",
    "list_objects",
    "put_bytes",
    "s3_client",
]

log = logging.getLogger(__name__)

_REASONS = {"404": "no such object", "NoSuchKey": "no such object", "403": "access denied"}


class StorageError(OSError):
    """An S3 request failed (missing object, access denied, or failed after botocore's retries)."""


@dataclass(frozen=True)
class ObjectHead:
    """One version of an S3 object: ``etag`` without quotes, ``last_modified`` in UTC.

    The ETag is a version tag, not an MD5 (multipart uploads and SSE-KMS give other forms).
    """

    uri: S3Uri
    etag: str
    last_modified: dt.datetime
    size: int | None = None  # bytes, where the answer said

    @classmethod
    def from_listing(
        cls, uri: S3Uri, etag: str, last_modified: dt.datetime, size: int | None = None
    ) -> ObjectHead:
        """From a listing entry or a HEAD answer: quotes stripped, a naive time taken as UTC."""
        etag = etag.strip().strip('"')
        if not etag:
            raise StorageError(f"{str(uri)!r}: the server sent no ETag")
        if last_modified.tzinfo is None:
            last_modified = last_modified.replace(tzinfo=dt.UTC)
        return cls(uri, etag, last_modified.astimezone(dt.UTC), size)


def endpoint_url() -> str | None:
    """The custom S3 endpoint (``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``), or None."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def client_config() -> Any:
    """The botocore ``Config`` of every S3 client.

    botocore's own retries (standard mode: exponential backoff with jitter on throttling, 5xx and
    connection errors). Non-AWS S3 servers (moto, MinIO, Ceph) reject the newer default
    checksums, so checksums are sent and validated only where an operation requires them.
    """
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "max_attempts": 8},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def s3_client() -> Any:
    """A new boto3 S3 client with ``client_config()``.

    A fresh session per call, because boto3 sessions are not thread-safe (clients are): make one
    client per thread or task and reuse it.
    """
    import boto3

    return boto3.session.Session().client("s3", config=client_config())


def head(uri: S3Uri, client: Any = None) -> ObjectHead:
    """The current version of the object at ``uri`` (one HEAD request); ``StorageError`` if none."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not uri.key:
        raise StorageError(f"{str(uri)!r}: no object key")
    try:
        answer = (client or s3_client()).head_object(Bucket=uri.bucket, Key=uri.key)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", "?"))
        raise StorageError(f"{str(uri)!r}: {_REASONS.get(code, f'HEAD failed ({code})')}") from err
    except BotoCoreError as err:
        raise StorageError(f"{str(uri)!r}: HEAD failed ({err})") from err
    return ObjectHead.from_listing(
        uri, answer["ETag"], answer["LastModified"], answer.get("ContentLength")
    )


def list_objects(prefix: S3Uri, client: Any = None, page_size: int = 1000) -> Iterator[ObjectHead]:
    """Every object whose key starts with ``prefix.key``, in key order, folder markers included.

    ``page_size`` keys per ListObjectsV2 request (1000 is the S3 maximum); botocore retries each.
    """
    paginator = (client or s3_client()).get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=prefix.bucket, Prefix=prefix.key, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        for obj in page.get("Contents", ()):
            yield ObjectHead.from_listing(
                prefix.child(obj["Key"]), obj["ETag"], obj["LastModified"], obj.get("Size")
            )


def get_bytes(uri: S3Uri, client: Any = None) -> bytes:
    """The object's bytes; ``FileNotFoundError`` naming the URI when there is no such object."""
    client = client or s3_client()
    try:
        answer = client.get_object(Bucket=uri.bucket, Key=uri.key)
    except client.exceptions.NoSuchKey as err:
        raise FileNotFoundError(f"{str(uri)!r}: no such object") from err
    return answer["Body"].read()


def put_bytes(uri: S3Uri, data: bytes, client: Any = None) -> None:
    """Write ``data`` at ``uri`` in one ``PutObject`` (readers see the old object or the new one)."""
    (client or s3_client()).put_object(Bucket=uri.bucket, Key=uri.key, Body=data)


def download(uri: S3Uri, target: str | os.PathLike[str], client: Any = None) -> Path:
    """Download the object to ``target`` atomically; ``StorageError`` naming the URI on failure."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with atomic_path(target) as tmp:
            (client or s3_client()).download_file(uri.bucket, uri.key, str(tmp))
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", "?"))
        raise StorageError(f"{str(uri)!r}: download failed ({code})") from err
    except BotoCoreError as err:
        raise StorageError(f"{str(uri)!r}: download failed ({err})") from err
    log.debug("%s: downloaded to %s", uri, target)
    return Path(target)
