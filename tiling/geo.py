"""Pixel boxes to map coordinates and to lon/lat (WGS 84, x=lon, y=lat).

Conventions used throughout:

* A pixel box is ``(px_xmin, px_ymin, px_xmax, px_ymax)`` in scene pixels (column, row),
  corner-anchored with an exclusive max: the box ``(0, 0, 1, 1)`` is exactly pixel (0, 0).
* The integer pixel coordinate ``(col, row)`` is the **upper-left corner** of that pixel,
  i.e. rasterio's ``offset="ul"``; the centre of pixel (col, row) is ``(col + 0.5, row + 0.5)``.
  (``rasterio.transform.xy`` defaults to ``offset="center"``, which would shift every
  corner by half a pixel.)
* Map coordinates are ``x``/``y`` in the scene CRS; geographic ones are ``lon``/``lat`` in
  WGS 84 with longitude first (OGC:CRS84 axis order) — rasterio always uses x=lon.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import rasterio.transform
import rasterio.warp
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

__all__ = [
    "LonLatBoxes",
    "boxes_to_lonlat_polygons",
    "boxes_to_map",
    "box_corners",
    "crs_string",
    "scene_georef",
    "to_lonlat",
]

WGS84 = CRS.from_epsg(4326)
GCP_TOLERANCE_PX = 1.0  # how far a GCP may lie from the affine fitted to all of them


def crs_string(crs: CRS | str | int | None) -> str | None:
    """The CRS as a short string (``"EPSG:32619"`` when it has an authority code, else WKT).

    Accepts a rasterio ``CRS``, anything ``CRS.from_user_input`` takes, or None (→ None).
    """
    if crs is None:
        return None
    return _as_crs(crs).to_string()


def scene_georef(ds) -> tuple[CRS | None, Affine | None]:
    """An open dataset's CRS and pixel → CRS transform (``offset="ul"``), or (None, None).

    The geotransform when the file has a CRS; for GCP-only files (mosaics georeferenced by
    ground control points) the CRS of the GCPs and the affine least-squares fitted to them
    (``rasterio.transform.from_gcps``, GDAL's ``GDALGCPsToGeoTransform``: the first-order
    polynomial GDAL itself warps with when a file has fewer than 6 GCPs). Rotated and south-up
    transforms are kept as they are. Raises ValueError when the GCPs fix no affine (fewer than
    3, collinear) or miss it by more than ``GCP_TOLERANCE_PX`` (a warped mosaic: rectify it
    first, e.g. with ``gdalwarp``) — wrong coordinates would be worse than none.
    """
    if ds.crs:
        return ds.crs, ds.transform
    gcps, gcp_crs = ds.gcps
    if not gcps or not gcp_crs:
        return None, None
    if len(gcps) < 3:
        raise ValueError(f"{len(gcps)} GCP(s): an affine georeference needs at least 3")
    cols, rows = np.array([g.col for g in gcps]), np.array([g.row for g in gcps])
    if np.linalg.matrix_rank(np.column_stack([cols, rows, np.ones_like(cols)])) < 3:
        # GDAL's fit does not fail on these: it returns a meaningless transform
        raise ValueError(f"{len(gcps)} GCPs on one line fix no affine georeference")
    transform = rasterio.transform.from_gcps(gcps)
    pixel = math.sqrt(abs(transform.determinant))
    if not (math.isfinite(pixel) and pixel > 0):
        raise ValueError(f"{len(gcps)} GCPs whose map points lie on one line fix no affine")
    xs, ys = transform @ (cols, rows)
    miss = np.hypot(xs - [g.x for g in gcps], ys - [g.y for g in gcps]).max() / pixel
    if miss > GCP_TOLERANCE_PX:
        raise ValueError(
            f"GCPs are {miss:.1f} px from the best affine fit (tolerance {GCP_TOLERANCE_PX} px): "
            "rectify the scene (e.g. gdalwarp) so its georeference is a geotransform"
        )
    return gcp_crs, transform


def _as_crs(crs: CRS | str | int) -> CRS:
    try:
        return crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    except CRSError as err:
        raise ValueError(f"{crs!r}: not a CRS rasterio understands") from err


def _as_boxes(px_boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(px_boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"px_boxes: shape {boxes.shape}, expected (N, 4) [xmin, ymin, xmax, ymax]")
    return boxes


def box_corners(px_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 4 corners of each pixel box: ``(cols, rows)``, each (N, 4) float64.

    Order per box: (xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax) — a ring that,
    in pixel space (rows growing downwards), runs clockwise on screen.
    """
    b = _as_boxes(px_boxes)
    cols = b[:, [0, 2, 2, 0]]
    rows = b[:, [1, 1, 3, 3]]
    return cols, rows


def _pixels_to_map(transform: Affine, cols: np.ndarray, rows: np.ndarray):
    """Pixel (col, row) corner coordinates → map (xs, ys), same shape, ``offset="ul"``."""
    shape = cols.shape
    if cols.size == 0:
        return np.zeros(shape), np.zeros(shape)
    # offset="ul": (col, row) is the upper-left pixel corner, so xy adds no half-pixel shift.
    xs, ys = rasterio.transform.xy(transform, rows.ravel(), cols.ravel(), offset="ul")
    xs = np.asarray(xs, dtype=np.float64).reshape(shape)
    ys = np.asarray(ys, dtype=np.float64).reshape(shape)
    return xs, ys


def boxes_to_map(transform: Affine, px_boxes: np.ndarray) -> np.ndarray:
    """Pixel boxes (N, 4) ``[px_xmin, px_ymin, px_xmax, px_ymax]`` → map boxes (N, 4).

    Returns ``[x_min, y_min, x_max, y_max]`` in the scene CRS: the envelope of the 4
    transformed corners, so rotated or flipped transforms (negative or positive pixel
    height, shear) still give ``x_min <= x_max`` and ``y_min <= y_max``. Pixel coordinates
    are corner-anchored (``offset="ul"``; see the module docstring).
    """
    cols, rows = box_corners(px_boxes)
    xs, ys = _pixels_to_map(transform, cols, rows)
    if xs.shape[0] == 0:
        return np.zeros((0, 4), dtype=np.float64)
    return np.stack([xs.min(axis=1), ys.min(axis=1), xs.max(axis=1), ys.max(axis=1)], axis=1)


def to_lonlat(
    crs: CRS | str | int, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates in ``crs`` → ``(lon, lat)`` in WGS 84 degrees, any (matching) shape.

    The order is longitude first (x=lon, y=lat), as OGC:CRS84 and rasterio use.
    """
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    if xs.shape != ys.shape:
        raise ValueError(f"xs shape {xs.shape} != ys shape {ys.shape}")
    if xs.size == 0:
        return np.zeros(xs.shape), np.zeros(ys.shape)
    lon, lat = rasterio.warp.transform(_as_crs(crs), WGS84, xs.ravel(), ys.ravel())
    return (
        np.asarray(lon, dtype=np.float64).reshape(xs.shape),
        np.asarray(lat, dtype=np.float64).reshape(ys.shape),
    )


class LonLatBoxes(NamedTuple):
    """Pixel boxes placed on the globe (WGS 84 degrees, x=lon, y=lat).

    ``corner_lon``/``corner_lat`` are (N, 4): the box's 4 corners as a counterclockwise
    ring (in lon/lat) ready for ``shapely.polygons(np.stack([corner_lon, corner_lat], -1))``;
    ``lon``/``lat`` are (N,): the box centre (the pixel-space centre, transformed).
    """

    corner_lon: np.ndarray
    corner_lat: np.ndarray
    lon: np.ndarray
    lat: np.ndarray


def boxes_to_lonlat_polygons(
    crs: CRS | str | int, transform: Affine, px_boxes: np.ndarray
) -> LonLatBoxes:
    """Pixel boxes (N, 4) → their 4 corners and centre in lon/lat (OGC:CRS84 order).

    Each corner goes pixel → map (``transform``, ``offset="ul"``) → lon/lat (``crs`` →
    EPSG:4326). The rings are returned counterclockwise whatever the sign of the transform's
    determinant. Boxes that straddle the antimeridian are not split.
    """
    b = _as_boxes(px_boxes)
    cols, rows = box_corners(b)
    centre_cols = ((b[:, 0] + b[:, 2]) / 2.0)[:, None]
    centre_rows = ((b[:, 1] + b[:, 3]) / 2.0)[:, None]
    # One PROJ call for corners and centres together: (N, 5).
    xs, ys = _pixels_to_map(
        transform, np.hstack([cols, centre_cols]), np.hstack([rows, centre_rows])
    )
    lon, lat = to_lonlat(crs, xs, ys)
    corner_lon, corner_lat = lon[:, :4], lat[:, :4]
    # Shoelace sign: > 0 is counterclockwise. A north-up transform flips the pixel ring's
    # orientation; a rotated/mirrored one may not, so decide per box.
    area2 = np.sum(
        corner_lon * np.roll(corner_lat, -1, axis=1) - np.roll(corner_lon, -1, axis=1) * corner_lat,
        axis=1,
    )
    cw = area2 < 0
    corner_lon = np.where(cw[:, None], corner_lon[:, ::-1], corner_lon)
    corner_lat = np.where(cw[:, None], corner_lat[:, ::-1], corner_lat)
    return LonLatBoxes(
        np.ascontiguousarray(corner_lon), np.ascontiguousarray(corner_lat), lon[:, 4], lat[:, 4]
    )
