"""S3 access for scenes: URI parsing, a boto3 client, GDAL options for ``/vsis3/`` range reads.

Everything follows the standard AWS configuration, read at call time (never at import):
credentials from the usual chain (environment, shared files, ``AWS_PROFILE``, web identity,
instance metadata), ``AWS_REGION``, and ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for
S3-compatible servers such as MinIO, Ceph or moto. boto3 reads those itself;
``gdal_s3_options`` translates the endpoint and region into GDAL's own option names, and GDAL
finds the credentials through its own chain — so the options dict holds no secret and is safe
to print.

Use::

    with rasterio.Env(**gdal_s3_options()):
        with rasterio.open(to_gdal_path("s3://bucket/scene.tif")) as ds:
            ds.read(1, window=Window(col_off, row_off, width, height))  # HTTP range requests
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

__all__ = [
    "RASTER_SUFFIXES",
    "S3_CLIENT_CONFIG",
    "endpoint_url",
    "fetch_to_temp",
    "gdal_s3_options",
    "head_ref",
    "object_ref",
    "parse_s3_uri",
    "s3_client",
    "to_gdal_path",
]

if TYPE_CHECKING:
    from tiling.scene import SceneRef

log = logging.getLogger(__name__)

# Suffixes GDAL may open through /vsis3/ (CPL_VSIL_CURL_ALLOWED_EXTENSIONS; matched
# case-insensitively by GDAL). Anything else is refused before a request is sent.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".j2k", ".png", ".jpg", ".jpeg", ".img")

# botocore's own retries (standard mode: exponential backoff with jitter on throttling, 5xx and
# connection errors). Non-AWS S3 servers (moto, MinIO, Ceph) reject the newer default checksums,
# so checksums are sent and validated only where an operation requires them.
S3_CLIENT_CONFIG: dict[str, Any] = {
    "retries": {"mode": "standard", "max_attempts": 8},
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html (simplified)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/parts`` → ``("bucket", "key/parts")``; the key may be ``""`` (bucket root).

    Raises ``ValueError`` naming the URI when it is not ``s3://`` or the bucket name is invalid.
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"{uri!r}: expected an s3://bucket/key URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r}: no bucket name after s3://")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(
            f"{uri!r}: bucket {bucket!r} is not a valid S3 bucket name "
            "(3-63 characters: lowercase letters, digits, '.', '-')"
        )
    return bucket, key


def to_gdal_path(uri: str | os.PathLike[str]) -> str:
    """The path GDAL opens: ``s3://b/k`` → ``/vsis3/b/k``; a local path is returned unchanged."""
    text = os.fspath(uri)
    if not text.startswith("s3://"):
        return text
    bucket, key = parse_s3_uri(text)
    if not key:
        raise ValueError(f"{text!r}: no object key; GDAL needs s3://bucket/key")
    return f"/vsis3/{bucket}/{key}"


def endpoint_url() -> str | None:
    """The custom S3 endpoint (``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``), or None."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_client() -> Any:
    """A new boto3 S3 client: standard AWS configuration, botocore retries, checksums when required.

    boto3 reads the credential chain, ``AWS_REGION`` and ``AWS_ENDPOINT_URL`` itself. A fresh
    session per call, because boto3 sessions are not thread-safe (clients are): make one client
    per thread or task and reuse it.
    """
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client("s3", config=Config(**S3_CLIENT_CONFIG))


def object_ref(bucket: str, key: str, etag: str, last_modified: datetime) -> SceneRef:
    """The ``SceneRef`` of one object version, from a listing entry or a HEAD answer.

    The version is the ETag without its quotes: a version tag, not an MD5 (multipart uploads
    and SSE-KMS give other forms). ``last_modified`` is made UTC.
    """
    from tiling.scene import SceneRef

    etag = etag.strip().strip('"')
    if not etag:
        raise ValueError(f"s3://{bucket}/{key}: the server sent no ETag")
    if last_modified.tzinfo is None:
        last_modified = last_modified.replace(tzinfo=UTC)
    return SceneRef(f"s3://{bucket}/{key}", etag, last_modified.astimezone(UTC))


def head_ref(uri: str, client: Any = None) -> SceneRef:
    """The current version of the object at ``uri`` (one HEAD request).

    Raises ``tiling.scene.SceneError`` (an ``OSError``) naming the URI when the object is
    missing, access is denied or the request fails after botocore's retries.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from tiling.scene import SceneError

    bucket, key = parse_s3_uri(uri)
    if not key:
        raise SceneError(f"{uri!r}: no object key")
    client = client or s3_client()
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", "?"))
        reason = {"404": "no such object", "NoSuchKey": "no such object", "403": "access denied"}
        raise SceneError(f"{uri!r}: {reason.get(code, f'HEAD failed ({code})')}") from err
    except BotoCoreError as err:
        raise SceneError(f"{uri!r}: HEAD failed ({err})") from err
    return object_ref(bucket, key, head["ETag"], head["LastModified"])


def gdal_s3_options(
    *,
    non_cached: Iterable[str] = ("/vsis3/",),
    suffixes: Iterable[str] = RASTER_SUFFIXES,
    max_retry: int = 5,
    retry_delay_s: float = 1.0,
) -> dict[str, str]:
    """GDAL options to read ``/vsis3/`` the way boto3 reaches S3, for ``rasterio.Env(**...)``.

    * ``AWS_S3_ENDPOINT`` (``host:port``, no scheme), ``AWS_HTTPS`` and
      ``AWS_VIRTUAL_HOSTING=FALSE`` (path-style requests) when ``AWS_ENDPOINT_URL[_S3]`` names a
      custom endpoint.
    * ``AWS_REGION`` from ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.
    * ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``: no LIST of the scene's "directory" and no
      probing for sidecar files on open.
    * ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS``: only raster ``suffixes`` are opened.
    * ``CPL_VSIL_CURL_NON_CACHED``: GDAL keeps downloaded ranges in a process-wide cache that
      outlives the dataset, so a scene overwritten in place would be read stale by a
      long-running scanner (DESIGN.md field notes). Prefixes listed here are cached only while
      a dataset is open. The default covers all of ``/vsis3/``.
    * ``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY`` (seconds, doubled each retry) for
      throttling and 5xx answers.

    No credentials: GDAL reads them from its own chain (environment, ``~/.aws``, web identity,
    instance metadata), and rasterio adds environment credentials itself; this dict can be logged.
    """
    options = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ",".join(_normalise_suffixes(suffixes)),
        "GDAL_HTTP_MAX_RETRY": str(int(max_retry)),
        "GDAL_HTTP_RETRY_DELAY": f"{float(retry_delay_s):g}",
    }
    prefixes = [_gdal_prefix(p) for p in non_cached]
    if prefixes:
        options["CPL_VSIL_CURL_NON_CACHED"] = ":".join(prefixes)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["AWS_REGION"] = region
    url = endpoint_url()
    if url:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"AWS_ENDPOINT_URL={url!r}: expected http(s)://host[:port]")
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        if parts.path.strip("/"):
            # GDAL's AWS_S3_ENDPOINT is host[:port] only; a path prefix would be silently lost.
            raise ValueError(f"AWS_ENDPOINT_URL={url!r}: GDAL supports no path after host:port")
        options["AWS_S3_ENDPOINT"] = host
        options["AWS_HTTPS"] = "YES" if parts.scheme == "https" else "NO"
        options["AWS_VIRTUAL_HOSTING"] = "FALSE"
    return options


@contextlib.contextmanager
def fetch_to_temp(uri: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a local file holding the object at ``uri``, removed on exit; a local path as it is.

    The fallback for layouts GDAL cannot range-read efficiently — a PNG or JPEG (one compressed
    stream), a GeoTIFF with strips of the full width and no overviews — where ``/vsis3/`` would
    fetch most of the object anyway, and many times over for a tiled pass. Tiled GeoTIFFs
    (COGs) and JPEG 2000 with tiles should be read through ``to_gdal_path`` instead.
    The file keeps the object's suffix so GDAL picks the driver by extension if it must.
    """
    text = os.fspath(uri)
    if not text.startswith("s3://"):
        yield Path(text)
        return
    bucket, key = parse_s3_uri(text)
    if not key:
        raise ValueError(f"{text!r}: no object key to fetch")
    tmpdir = Path(tempfile.mkdtemp(prefix="whalescan-s3-"))
    target = tmpdir / (Path(key).name or "object")
    try:
        from botocore.exceptions import ClientError

        try:
            s3_client().download_file(bucket, key, str(target))
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "?")
            raise OSError(f"{text!r}: download failed ({code})") from err
        log.debug("%s: fetched %d bytes to %s", text, target.stat().st_size, target)
        yield target
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _normalise_suffixes(suffixes: Iterable[str]) -> list[str]:
    out = []
    for s in suffixes:
        s = s.strip().lower()
        if s and not s.startswith("."):
            s = "." + s
        if s and s not in out:
            out.append(s)
    return out


def _gdal_prefix(prefix: str) -> str:
    if not prefix.startswith("s3://"):
        return prefix
    bucket, key = parse_s3_uri(prefix)
    return f"/vsis3/{bucket}/{key}"
