"""Detections for GIS users: a GeoPackage, GeoJSON or CSV that QGIS and GeoPandas open.

Geometry is each box's polygon in EPSG:4326 (x = lon, y = lat: the reports' CRS84 ``geometry``
column); the native-CRS columns (``native_crs``, ``x_min``…``y_max``), scene pixels and run
fields stay as attributes. A CSV carries ``lon``/``lat`` (box centre) and the polygon as
``wkt``. Detections of scenes without a CRS have no geometry (null / empty ``wkt``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from storage.atomic import atomic_path

__all__ = ["FORMATS", "detections_frame", "write_gis"]

# suffix -> OGR driver (None: CSV through pandas)
FORMATS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".csv": None}
LAYER = "detections"


def detections_frame(table: pa.Table):
    """A ``DETECTIONS_SCHEMA`` table → GeoDataFrame in EPSG:4326 (``bbox`` dropped: the
    geometry's own extent)."""
    import geopandas as gpd
    import shapely

    wkb = table.column("geometry").to_pylist()
    df = table.drop_columns([c for c in ("geometry", "bbox") if c in table.column_names])
    geometry = gpd.GeoSeries(shapely.from_wkb(wkb) if wkb else [], crs="EPSG:4326")
    return gpd.GeoDataFrame(df.to_pandas(), geometry=geometry)


def write_gis(table: pa.Table, out: str | os.PathLike[str]) -> Path:
    """Write the detections ``table`` to ``out`` (``.gpkg``, ``.geojson`` or ``.csv``),
    atomically; returns the path. ``ValueError`` for another suffix."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{str(out)!r}: expected a file ending in {', '.join(FORMATS)}")
    frame = detections_frame(table)
    with atomic_path(out) as tmp:
        if FORMATS[suffix] is None:
            csv = frame.drop(columns="geometry")
            csv["wkt"] = frame.geometry.to_wkt(rounding_precision=-1)  # full precision
            csv.to_csv(tmp, index=False)
        else:
            # OGR wants to create the file itself, under a name with the format's suffix.
            named = tmp.with_name(tmp.name + suffix)
            try:
                layer = LAYER if suffix == ".gpkg" else None
                frame.to_file(named, driver=FORMATS[suffix], layer=layer)
                os.replace(named, tmp)
            finally:
                named.unlink(missing_ok=True)
    return out
