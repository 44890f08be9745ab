"""Scenes: one frozen description of a scene version (``Scene``), and opening it with rasterio.

``Scene`` lives here, in ``tiling``, because every layer above needs it and it needs nothing
above it: ``tiling`` lists, opens and describes scenes, ``reports`` writes them to Parquet
(``reports`` may import ``tiling``; ``tiling`` never imports ``reports`` or ``jobs``).

GDAL reads S3 scenes itself through ``/vsis3/`` with HTTP range requests; the options that make it
reach the same endpoint as boto3 (``gdal_s3_options``) live here, beside ``scene_env``. Everything
else about S3 (URIs, the boto3 client, HEAD and listing) is the ``storage`` package's.

Use::

    with scene_env(uri), open_scene(uri) as ds:
        ds.read(1, window=Window(col_off, row_off, width, height))  # range requests on S3
"""

from __future__ import annotations

import datetime as dt
import numbers
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError

from storage.s3 import ObjectHead, StorageError, endpoint_url, head
from storage.uri import S3Uri, is_s3
from tiling.geo import crs_string, scene_georef

# Suffixes GDAL may open through /vsis3/ (CPL_VSIL_CURL_ALLOWED_EXTENSIONS; matched
# case-insensitively by GDAL). Anything else is refused before a request is sent.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".j2k", ".png", ".jpg", ".jpeg", ".img")


class SceneError(OSError):
    """A scene cannot be used: missing, not a raster, truncated, too small, wrong bands…"""


@dataclass(frozen=True)
class Scene:
    """One scene version: where it is, which version was seen, and — once opened — its raster.

    Fields:
        uri: a local path or ``s3://bucket/key``.
        version: the S3 ETag (quotes stripped) or ``"<size>-<mtime_ns>"`` for a local file.
        modified: the version's time (S3 LastModified / mtime), timezone-aware; None only for a
            scene that could not even be stat'ed.
        width, height: pixels (columns, rows); bands: band count; dtype: e.g. ``"uint8"``.
        crs: the scene CRS (rasterio ``CRS``, ``"EPSG:32619"``, WKT, …) or None if it has none.
        transform: pixel → ``crs`` affine (``offset="ul"``), or None; required when ``crs`` is set.
        nodata: the nodata value, or None.
        gsd_m: ground sample distance, metres per pixel (``tiling.sampling``: from the
            georeferencing or the user's ``--gsd``), or None if unknown.

    Listing and ``resolve_scene`` fill the first three; ``describe`` the raster fields.
    """

    uri: str
    version: str
    modified: dt.datetime | None = None
    width: int | None = None
    height: int | None = None
    bands: int | None = None
    dtype: str | None = None
    crs: CRS | str | int | None = None
    transform: Affine | None = None
    nodata: float | None = None
    gsd_m: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri:
            raise ValueError(f"Scene.uri={self.uri!r}, expected a non-empty string")
        if not isinstance(self.version, str) or not self.version:
            raise ValueError(
                f"Scene.version={self.version!r} for {self.uri!r}, expected a non-empty string"
            )
        for name in ("width", "height", "bands"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, numbers.Integral) or value <= 0):
                raise ValueError(
                    f"Scene.{name}={value!r} for {self.uri!r}, expected a positive int"
                )
        if self.crs is not None and self.transform is None:
            raise ValueError(f"Scene for {self.uri!r}: crs is set but transform is None")
        if self.transform is not None and not isinstance(self.transform, Affine):
            raise ValueError(
                f"Scene.transform for {self.uri!r}: {type(self.transform).__name__}, "
                "expected affine.Affine"
            )
        if self.gsd_m is not None and not self.gsd_m > 0:
            raise ValueError(f"Scene.gsd_m={self.gsd_m!r} for {self.uri!r}, expected metres > 0")
        if self.modified is not None and (
            not isinstance(self.modified, dt.datetime) or self.modified.utcoffset() is None
        ):
            raise ValueError(
                f"Scene.modified={self.modified!r} for {self.uri!r}, "
                "expected a timezone-aware datetime"
            )

    @classmethod
    def from_head(cls, obj: ObjectHead) -> Scene:
        """One S3 object version (from a listing entry or a HEAD answer)."""
        return cls(str(obj.uri), obj.etag, obj.last_modified)

    @property
    def megapixels(self) -> float | None:
        """width × height / 1e6, or None before the scene is described."""
        if self.width is None or self.height is None:
            return None
        return self.width * self.height / 1e6


def resolve_scene(uri: str) -> Scene:
    """Look up the current version of ``uri`` (stat for files, HEAD for ``s3://``)."""
    if is_s3(uri):
        try:
            return Scene.from_head(head(S3Uri.parse(uri)))
        except (StorageError, ValueError) as e:
            raise SceneError(str(e)) from e
    try:
        st = os.stat(uri)
    except OSError as e:
        raise SceneError(f"{uri!r}: {e.strerror or e}") from e
    if not os.path.isfile(uri):
        raise SceneError(f"{uri!r}: not a file")
    modified = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)
    return Scene(uri, f"{st.st_size}-{st.st_mtime_ns}", modified)


# Each block is read about once (halos overlap a little), so a small block cache does: GDAL's
# default (5 % of RAM) grows the process with the scene until it is full (bench/bench_detect.py).
GDAL_CACHE_MB = 64


def scene_env(uri: str) -> rasterio.Env:
    """The GDAL settings reading ``uri`` needs (S3 endpoint options for ``s3://``, a bounded cache).

    Enter it around opens *and* reads: GDAL reads S3 objects lazily, with range requests.
    """
    options: dict = {"GDAL_CACHEMAX": GDAL_CACHE_MB}
    if is_s3(uri):
        options.update(gdal_s3_options())
    return rasterio.Env(**options)


def open_scene(uri: str) -> rasterio.DatasetReader:
    """Open ``uri`` (local path or ``s3://``) with rasterio; close it with ``with`` or ``.close()``."""
    path = to_gdal_path(uri)
    with scene_env(uri):
        try:
            return rasterio.open(path)
        except RasterioError as e:
            raise SceneError(f"{uri!r}: not a readable raster ({_short(e)})") from e


def describe(ds: rasterio.DatasetReader, scene: Scene) -> Scene:
    """``scene`` with the raster fields of its open dataset ``ds``.

    A scene without a CRS (or GCPs) keeps ``crs``/``transform`` None; a GCP-only scene gets the
    GCPs' CRS and the affine fitted to them (``tiling.geo.scene_georef``).
    """
    try:
        crs, transform = scene_georef(ds)
    except ValueError as e:
        raise SceneError(f"{scene.uri!r}: {e}") from e
    return replace(
        scene, width=ds.width, height=ds.height, bands=ds.count, dtype=ds.dtypes[0],
        crs=crs_string(crs), transform=transform, nodata=ds.nodata,
    )  # fmt: skip


def to_gdal_path(uri: str | os.PathLike[str]) -> str:
    """The path GDAL opens: ``s3://b/k`` → ``/vsis3/b/k``; a local path is returned unchanged."""
    text = os.fspath(uri)
    if not is_s3(text):
        return text
    s3 = S3Uri.parse(text)
    if not s3.key:
        raise ValueError(f"{text!r}: no object key; GDAL needs s3://bucket/key")
    return f"/vsis3/{s3.bucket}/{s3.key}"


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
      long-running scanner (``tests/test_s3.py::test_overwritten_object_is_read_fresh``).
      Prefixes listed here are cached only while a dataset is open. The default covers all of
      ``/vsis3/``.
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
    if not is_s3(prefix):
        return prefix
    s3 = S3Uri.parse(prefix)
    return f"/vsis3/{s3.bucket}/{s3.key}"


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:300]
