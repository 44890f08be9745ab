"""Truth sidecars: the face boxes of a synthetic scene as a Parquet table.

``OUT.tif`` → ``OUT.truth.parquet``, one row per face (a whale with its head visible):

=========================================  =======  ==============================================
column                                     type     meaning
=========================================  =======  ==============================================
``px_xmin, px_ymin, px_xmax, px_ymax``     float64  face box, scene pixels (col, row), corner-
                                                    anchored, exclusive max
``px_cx, px_cy``                           float64  box centre = head centre, scene pixels
``heading_deg``                            float64  compass bearing of the rostrum; 0 = up (-row),
                                                    90 = right (+col)
``lon, lat``                               float64  box centre in WGS 84; null when no CRS
=========================================  =======  ==============================================
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio.warp
from affine import Affine
from rasterio.crs import CRS

from synth.draw import face_box
from synth.objects import SceneObject

__all__ = ["TRUTH_SCHEMA", "truth_path", "truth_table", "write_truth"]

TRUTH_SCHEMA = pa.schema(
    [
        (name, pa.float64())
        for name in (
            "px_xmin",
            "px_ymin",
            "px_xmax",
            "px_ymax",
            "px_cx",
            "px_cy",
            "heading_deg",
            "lon",
            "lat",
        )
    ]
)


def truth_path(scene_path: str | Path) -> Path:
    """``OUT.tif`` → ``OUT.truth.parquet`` (the raster suffix replaced)."""
    return Path(scene_path).with_suffix(".truth.parquet")


def truth_table(
    faces: Sequence[SceneObject], transform: Affine | None, crs: CRS | None, metadata: dict
) -> pa.Table:
    """One row per face; lon/lat of the box centre when ``crs`` is set (else null)."""
    boxes = np.array([face_box(f) for f in faces], dtype=np.float64).reshape(-1, 4)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    lon = lat = pa.nulls(len(faces), pa.float64())
    if crs is not None and transform is not None and len(faces):
        # continuous pixel coordinates, corner-anchored: x = a*col + b*row + c
        xs = transform.a * cx + transform.b * cy + transform.c
        ys = transform.d * cx + transform.e * cy + transform.f
        lons, lats = rasterio.warp.transform(crs, CRS.from_epsg(4326), xs, ys)
        lon, lat = pa.array(lons, pa.float64()), pa.array(lats, pa.float64())
    heading = np.array([f.heading_deg for f in faces], dtype=np.float64)
    columns = [pa.array(c, pa.float64()) for c in (*boxes.T, cx, cy, heading)] + [lon, lat]
    schema = TRUTH_SCHEMA.with_metadata({"whalescan.synth": json.dumps(metadata)})
    return pa.Table.from_arrays(columns, schema=schema)


def write_truth(path: str | Path, table: pa.Table) -> Path:
    pq.write_table(table, path, compression="zstd")
    return Path(path)
