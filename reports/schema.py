"""The frozen Arrow schemas of the reports: detections (GeoParquet) and scenes (the ledger).

Frozen means: columns are never renamed, retyped or reordered; new ones are appended,
nullable, and ``SCHEMA_VERSION`` is bumped. ``tests/test_reports.py`` pins both schemas.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "BBOX_TYPE",
    "DETECTIONS_SCHEMA",
    "SCENES_SCHEMA",
    "SCENE_STATUSES",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_KEY",
]

SCHEMA_VERSION = "3"  # 2: scenes gain gsd_m, px_scale; 3: scenes gain parameters
SCHEMA_VERSION_KEY = "whalescan:schema_version"
SCENE_STATUSES = ("ok", "failed", "skipped")

_METADATA = {SCHEMA_VERSION_KEY.encode(): SCHEMA_VERSION.encode()}
_UTC_US = pa.timestamp("us", tz="UTC")


def _fields(type_: pa.DataType, *names: str) -> list[pa.Field]:
    """Nullable fields ``names`` of one type, in order."""
    return [pa.field(name, type_) for name in names]


# GeoParquet 1.1 bbox covering column of `geometry` (lon/lat degrees).
BBOX_TYPE = pa.struct(_fields(pa.float64(), "xmin", "ymin", "xmax", "ymax"))

# The scene version a row is about, first in both tables.
_SCENE_ID_FIELDS = (
    pa.field("scene_uri", pa.string(), nullable=False),
    pa.field("scene_version", pa.string(), nullable=False),
)
# The run that wrote a row: how it scored and with which model, in both tables.
_RUN_FIELDS = (
    pa.field("mode", pa.string()),
    pa.field("backend", pa.string()),
    pa.field("model_sha256", pa.string()),
    pa.field("run_id", pa.string()),
)

DETECTIONS_SCHEMA = pa.schema(
    [
        *_SCENE_ID_FIELDS,
        pa.field("detection_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("score", pa.float32()),
        # Scene pixels (column, row), corner-anchored, xmax/ymax exclusive.
        *_fields(pa.float64(), "px_xmin", "px_ymin", "px_xmax", "px_ymax"),
        pa.field("native_crs", pa.string()),
        # Envelope of the box in native_crs units.
        *_fields(pa.float64(), "x_min", "y_min", "x_max", "y_max"),
        # Box centre, WGS 84 degrees.
        *_fields(pa.float64(), "lon", "lat"),
        # WKB polygon in OGC:CRS84 (x=lon, y=lat); the GeoParquet primary column.
        pa.field("geometry", pa.binary()),
        pa.field("bbox", BBOX_TYPE),
        *_RUN_FIELDS,
        pa.field("detected_at", _UTC_US),
    ],
    metadata=_METADATA,
)

SCENES_SCHEMA = pa.schema(
    [
        *_SCENE_ID_FIELDS,
        pa.field("scene_key", pa.string(), nullable=False),
        *_fields(pa.int64(), "width", "height", "bands"),
        pa.field("dtype", pa.string()),
        pa.field("native_crs", pa.string()),
        pa.field("status", pa.string(), nullable=False),  # one of SCENE_STATUSES
        pa.field("error", pa.string()),
        pa.field("detections", pa.int64()),
        *_fields(pa.float64(), "megapixels", "seconds"),
        *_RUN_FIELDS,
        *_fields(_UTC_US, "started_at", "finished_at"),
        # Appended: the scene version's time (S3 LastModified / file mtime) that gave `dt`.
        pa.field("scene_modified", _UTC_US),
        # Appended (version 2): the scene's ground sample distance in metres (its georeferencing's,
        # or the user's --gsd; null when unknown) and the native px per scored px it was scored
        # at (1.0: native pixels; null when it was not scored).
        *_fields(pa.float64(), "gsd_m", "px_scale"),
        # Appended (version 3): the result-affecting settings that are part of `scene_key`
        # (threshold, NMS IoU, stride, bands, scaling, GSD…) as canonical JSON, so two results
        # of one scene version can be told apart; null in rows written before.
        pa.field("parameters", pa.string()),
    ],
    metadata=_METADATA,
)
