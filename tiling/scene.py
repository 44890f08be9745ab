"""Scenes: what a scene URI points at, its version, and opening it with rasterio (local or S3)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import rasterio
from affine import Affine
from rasterio.errors import RasterioError

from tiling.geo import crs_string, scene_georef


class SceneError(OSError):
    """A scene cannot be used: missing, not a raster, truncated, too small, wrong bands…"""


@dataclass(frozen=True)
class SceneRef:
    """A scene and the version of it that was seen.

    ``uri`` is a local path or ``s3://bucket/key``; ``version`` the S3 ETag (quotes stripped) or
    ``"<size>-<mtime_ns>"`` for a local file; ``modified`` the UTC time of that version.
    """

    uri: str
    version: str
    modified: dt.datetime


@dataclass(frozen=True)
class SceneInfo:
    """What detection needs to know about an opened scene (pixels are (col, row))."""

    uri: str
    width: int
    height: int
    count: int
    dtype: str
    crs: str | None
    transform: Affine | None
    nodata: float | None


def resolve_scene(uri: str) -> SceneRef:
    """Look up the current version of ``uri`` (stat for files, HEAD for ``s3://``)."""
    if uri.startswith("s3://"):
        from tiling.s3 import head_ref

        return head_ref(uri)
    try:
        st = os.stat(uri)
    except OSError as e:
        raise SceneError(f"{uri!r}: {e.strerror or e}") from e
    if not os.path.isfile(uri):
        raise SceneError(f"{uri!r}: not a file")
    modified = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)
    return SceneRef(uri, f"{st.st_size}-{st.st_mtime_ns}", modified)


# Each block is read about once (halos overlap a little), so a small block cache does: GDAL's
# default (5 % of RAM) grows the process with the scene until it is full (bench/bench_detect.py).
GDAL_CACHE_MB = 64


def scene_env(uri: str) -> rasterio.Env:
    """The GDAL settings reading ``uri`` needs (S3 endpoint options for ``s3://``, a bounded cache).

    Enter it around opens *and* reads: GDAL reads S3 objects lazily, with range requests.
    """
    options: dict = {"GDAL_CACHEMAX": GDAL_CACHE_MB}
    if uri.startswith("s3://"):
        from tiling.s3 import gdal_s3_options

        options.update(gdal_s3_options())
    return rasterio.Env(**options)


def open_scene(uri: str) -> rasterio.DatasetReader:
    """Open ``uri`` (local path or ``s3://``) with rasterio; close it with ``with`` or ``.close()``."""
    path = uri
    if uri.startswith("s3://"):
        from tiling.s3 import to_gdal_path

        path = to_gdal_path(uri)
    with scene_env(uri):
        try:
            return rasterio.open(path)
        except RasterioError as e:
            raise SceneError(f"{uri!r}: not a readable raster ({_short(e)})") from e


def describe(ds: rasterio.DatasetReader, uri: str) -> SceneInfo:
    """SceneInfo of an open dataset; a scene without a CRS (or GCPs) keeps ``crs``/``transform``
    None. GCP-only scenes get the GCPs' CRS and the affine fitted to them (``scene_georef``)."""
    crs, transform = scene_georef(ds)
    return SceneInfo(
        uri, ds.width, ds.height, ds.count, ds.dtypes[0], crs_string(crs), transform, ds.nodata
    )


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:300]
