"""Detections as GeoParquet 1.1 and scene rows as Parquet, built in memory, stored atomically."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely

from reports.keys import detection_ids
from reports.run import SceneRun
from reports.schema import DETECTIONS_SCHEMA, SCENE_STATUSES, SCENES_SCHEMA
from reports.store import Store
from tiling.geo import boxes_to_lonlat_polygons, boxes_to_map, crs_string
from tiling.scene import Scene

__all__ = [
    "ROW_GROUP_SIZE",
    "detections_table",
    "geo_metadata",
    "scenes_table",
    "table_to_parquet_bytes",
    "write_geoparquet",
    "write_parquet",
]

log = logging.getLogger(__name__)

# Small row groups so the bbox covering statistics let readers skip most of a large file;
# a typical scene's detections fit in one group anyway.
ROW_GROUP_SIZE = 8192

# Columns that need a CRS; null for a scene without one.
_GEO_COLUMNS = ("native_crs", "x_min", "y_min", "x_max", "y_max", "lon", "lat", "geometry", "bbox")
_COVERING = {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}


def detections_table(
    run: SceneRun,
    px_boxes: np.ndarray,
    scores: np.ndarray,
    *,
    label: str,
    detected_at: datetime,
) -> pa.Table:
    """One row per detection, in ``DETECTIONS_SCHEMA``.

    Args:
        run: the scene version the boxes come from, the run stamp and the scene key.
        px_boxes: (N, 4) float64 ``[px_xmin, px_ymin, px_xmax, px_ymax]`` in scene pixels
            (column, row), corner-anchored (``offset="ul"``), max exclusive.
        scores: (N,) float32 in 0..1.
        detected_at: timezone-aware time of detection (stored as UTC microseconds).

    Rows are sorted by ``(px_ymin, px_xmin, px_ymax, px_xmax, -score)`` so the same detections
    give the same file whatever order regions finished in. Without a CRS (or transform) the pixel
    columns are filled; ``native_crs``, ``x_*``, ``lon``/``lat``, ``geometry`` and ``bbox`` are
    null and a warning names the scene.
    """
    scene, stamp = run.scene, run.stamp
    boxes = np.asarray(px_boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{scene.uri!r}: px_boxes shape {boxes.shape}, expected (N, 4)")
    score = np.asarray(scores, dtype=np.float32).reshape(-1)
    if score.shape[0] != boxes.shape[0]:
        raise ValueError(f"{scene.uri!r}: {score.shape[0]} scores for {boxes.shape[0]} boxes")
    if detected_at.utcoffset() is None:
        raise ValueError(
            f"{scene.uri!r}: detected_at={detected_at!r} is naive, expected timezone-aware"
        )

    order = np.lexsort((-score, boxes[:, 2], boxes[:, 3], boxes[:, 0], boxes[:, 1]))
    boxes, score = boxes[order], score[order]
    n = boxes.shape[0]

    def const(value: Any, type_: pa.DataType) -> pa.Array:
        return pa.repeat(pa.scalar(value, type=type_), n)

    columns: dict[str, pa.Array] = {
        "scene_uri": const(scene.uri, pa.string()),
        "scene_version": const(scene.version, pa.string()),
        "detection_id": pa.array(detection_ids(run.key, boxes), type=pa.string()),
        "label": const(label, pa.string()),
        "score": pa.array(score, type=pa.float32()),
        "px_xmin": pa.array(boxes[:, 0]),
        "px_ymin": pa.array(boxes[:, 1]),
        "px_xmax": pa.array(boxes[:, 2]),
        "px_ymax": pa.array(boxes[:, 3]),
    }
    columns |= _geo_columns(scene, boxes)
    columns |= {
        "mode": const(stamp.mode, pa.string()),
        "backend": const(stamp.backend, pa.string()),
        "model_sha256": const(stamp.model_sha256, pa.string()),
        "run_id": const(stamp.run_id, pa.string()),
        "detected_at": const(detected_at, DETECTIONS_SCHEMA.field("detected_at").type),
    }
    return pa.Table.from_pydict(
        {f.name: columns[f.name] for f in DETECTIONS_SCHEMA}, schema=DETECTIONS_SCHEMA
    )


def _geo_columns(scene: Scene, boxes: np.ndarray) -> dict[str, pa.Array]:
    """native_crs, x/y in the scene CRS, lon/lat, CRS84 WKB polygons and their bbox covering;
    all null (with a warning naming the scene) when the scene has no CRS or transform."""
    n = boxes.shape[0]
    if scene.crs is None or scene.transform is None:
        log.warning(
            "%s: scene has no CRS/transform; writing pixel boxes only "
            "(native_crs, x/y, lon/lat, geometry and bbox are null)",
            scene.uri,
        )
        return {name: pa.nulls(n, type=DETECTIONS_SCHEMA.field(name).type) for name in _GEO_COLUMNS}
    map_boxes = boxes_to_map(scene.transform, boxes)
    ll = boxes_to_lonlat_polygons(scene.crs, scene.transform, boxes)
    rings = np.stack([ll.corner_lon, ll.corner_lat], axis=-1)  # (N, 4, 2), closed by shapely
    polygons = shapely.polygons(rings) if n else np.empty(0, dtype=object)
    bounds = shapely.bounds(polygons) if n else np.zeros((0, 4))
    return {
        "native_crs": pa.repeat(pa.scalar(crs_string(scene.crs), type=pa.string()), n),
        "x_min": pa.array(map_boxes[:, 0]),
        "y_min": pa.array(map_boxes[:, 1]),
        "x_max": pa.array(map_boxes[:, 2]),
        "y_max": pa.array(map_boxes[:, 3]),
        "lon": pa.array(ll.lon),
        "lat": pa.array(ll.lat),
        "geometry": pa.array(shapely.to_wkb(polygons) if n else [], type=pa.binary()),
        "bbox": pa.StructArray.from_arrays(
            [pa.array(bounds[:, i]) for i in range(4)], names=["xmin", "ymin", "xmax", "ymax"]
        ),
    }


def geo_metadata(table: pa.Table) -> dict[str, Any]:
    """GeoParquet 1.1 ``geo`` metadata for a detections table (per-file bbox from ``bbox``).

    ``crs`` is omitted: GeoParquet's default is OGC:CRS84, which is what ``geometry`` holds
    (and DuckDB >= 1.5 rejects a CRS given as a plain string rather than PROJJSON).
    """
    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Polygon"]}
    bbox = table.column("bbox")
    if bbox.null_count < len(bbox):
        column["bbox"] = [
            pc.min(pc.struct_field(bbox, "xmin")).as_py(),
            pc.min(pc.struct_field(bbox, "ymin")).as_py(),
            pc.max(pc.struct_field(bbox, "xmax")).as_py(),
            pc.max(pc.struct_field(bbox, "ymax")).as_py(),
        ]
    column["covering"] = _COVERING
    return {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    """Serialize ``table`` (its schema metadata included) as zstd Parquet with statistics."""
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd",
        row_group_size=ROW_GROUP_SIZE,
        write_statistics=True,
    )
    return buf.getvalue()


def write_geoparquet(table: pa.Table, store: Store, relpath: str) -> str:
    """Write a detections table as GeoParquet 1.1 at ``relpath`` in ``store``; returns its URI.

    Works for an empty table (a valid file with the schema and no rows).
    """
    if not table.schema.equals(DETECTIONS_SCHEMA, check_metadata=False):
        raise ValueError(
            f"{store.uri(relpath)!r}: table does not have DETECTIONS_SCHEMA:\n{table.schema}"
        )
    metadata = dict(DETECTIONS_SCHEMA.metadata)
    metadata[b"geo"] = json.dumps(geo_metadata(table), separators=(",", ":")).encode()
    store.write_bytes(relpath, table_to_parquet_bytes(table.replace_schema_metadata(metadata)))
    return store.uri(relpath)


def scenes_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Scene-attempt rows (dicts keyed by ``SCENES_SCHEMA`` names) → a table in that schema.

    Missing keys are null; unknown keys and bad statuses are errors naming the row.
    """
    names = set(SCENES_SCHEMA.names)
    for i, row in enumerate(rows):
        extra = set(row) - names
        if extra:
            raise ValueError(
                f"scene row {i} ({row.get('scene_uri')!r}): unknown columns {sorted(extra)}"
            )
        if row.get("status") not in SCENE_STATUSES:
            raise ValueError(
                f"scene row {i} ({row.get('scene_uri')!r}): status={row.get('status')!r}, "
                f"expected one of {SCENE_STATUSES}"
            )
    return pa.Table.from_pylist([dict(row) for row in rows], schema=SCENES_SCHEMA)


def write_parquet(table: pa.Table, store: Store, relpath: str) -> str:
    """Write a plain (non-geo) Parquet table, e.g. scene rows, at ``relpath``; returns its URI."""
    store.write_bytes(relpath, table_to_parquet_bytes(table))
    return store.uri(relpath)
