"""The scan ledger: the scenes table, read back from a store and written one scene at a time."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from reports.geoparquet import scenes_table, write_geoparquet, write_parquet
from reports.keys import detections_relpath, partition_date, scene_key, scenes_relpath
from reports.schema import SCENES_SCHEMA, SceneMeta
from reports.store import Store
from tiling.geo import crs_string

__all__ = ["SceneWrite", "conform", "done_keys", "read_scenes", "write_scene_result"]

log = logging.getLogger(__name__)


class SceneWrite(NamedTuple):
    """What ``write_scene_result`` wrote: the key and relpaths (``detections`` None unless ok)."""

    scene_key: str
    detections: str | None
    scene: str


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``: columns picked by name and cast; missing (newer) ones null.

    Lets files written before a column was appended be read with today's schema.
    """
    arrays = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _scene_relpaths(store: Store) -> list[str]:
    return [p for p in store.list("scenes/") if p.endswith(".parquet")]


def read_scenes(store: Store, columns: list[str] | None = None) -> pa.Table:
    """All rows of all ``scenes/**/*.parquet`` in ``store``, in ``SCENES_SCHEMA``.

    ``columns`` picks a subset. An empty table with the schema when there are none.
    """
    schema = (
        SCENES_SCHEMA if columns is None else pa.schema([SCENES_SCHEMA.field(c) for c in columns])
    )
    relpaths = _scene_relpaths(store)
    tables = []
    for relpath, data in zip(relpaths, store.read_many(relpaths), strict=True):
        try:
            parquet = pq.ParquetFile(io.BytesIO(data))
            # Files older than an appended column lack it; conform() fills it with nulls.
            present = [c for c in schema.names if c in parquet.schema_arrow.names]
            table = parquet.read(columns=present)
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"{store.uri(relpath)!r}: not a readable scenes Parquet file") from err
        tables.append(conform(table, schema))
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def done_keys(store: Store, statuses: tuple[str, ...] = ("ok",)) -> set[str]:
    """Scene keys with a ledger row whose status is in ``statuses`` (default: done = ``ok``)."""
    table = read_scenes(store, columns=["scene_key", "status"])
    wanted = set(statuses)
    return {
        key
        for key, status in zip(
            table.column("scene_key").to_pylist(), table.column("status").to_pylist(), strict=True
        )
        if status in wanted
    }


def write_scene_result(
    store: Store,
    scene_meta: SceneMeta,
    detections_table: pa.Table | None,
    scene_row: dict[str, Any],
) -> SceneWrite:
    """Record one scene attempt: its detections file first, then its ledger row.

    ``scene_row`` carries the attempt (``status``, ``error``, ``seconds``, ``mode``, ``backend``,
    ``model_sha256``, ``run_id``, ``started_at``, ``finished_at``); the scene columns
    (``scene_uri``, ``scene_version``, ``scene_key``, ``width``, ``height``, ``bands``,
    ``dtype``, ``native_crs``, ``megapixels``, ``scene_modified``, and ``detections`` =
    the table's row count) are filled from ``scene_meta`` and ``detections_table`` where the
    row leaves them out.

    * ``status="ok"``: ``detections_table`` is required; it is written (and durable) before the
      scene row, so a scene is in the ledger only once its detections are.
    * ``"failed"`` / ``"skipped"``: only the scene row (``error`` should say why).

    Both objects are named by the scene key (URI, version, model, mode) and ``dt`` from the
    scene version's time, so a rerun overwrites them. If ``scene_meta.modified`` is None (the
    scene could not even be stat'ed), ``dt`` falls back to ``started_at`` or now.
    """
    row = dict(scene_row)
    status = row.get("status")
    for name in ("model_sha256", "mode"):
        if not row.get(name):
            raise ValueError(
                f"{scene_meta.uri!r}: scene_row needs {name!r} to derive the scene key"
            )
    if status == "ok" and detections_table is None:
        raise ValueError(f"{scene_meta.uri!r}: status 'ok' needs a detections table")
    if status != "ok" and detections_table is not None:
        raise ValueError(f"{scene_meta.uri!r}: status {status!r} must not carry a detections table")

    key = scene_key(scene_meta.uri, scene_meta.version, row["model_sha256"], row["mode"])
    when = scene_meta.modified or row.get("started_at") or datetime.now(UTC)
    dt = partition_date(when)

    megapixels = (
        scene_meta.width * scene_meta.height / 1e6
        if scene_meta.width is not None and scene_meta.height is not None
        else None
    )
    defaults = {
        "scene_uri": scene_meta.uri,
        "scene_version": scene_meta.version,
        "scene_key": key,
        "width": scene_meta.width,
        "height": scene_meta.height,
        "bands": scene_meta.bands,
        "dtype": scene_meta.dtype,
        "native_crs": crs_string(scene_meta.crs),
        "megapixels": megapixels,
        "detections": len(detections_table) if detections_table is not None else None,
        "scene_modified": scene_meta.modified,
    }
    for name, value in defaults.items():
        if row.get(name) is None:
            row[name] = value
    if row["scene_key"] != key:
        raise ValueError(
            f"{scene_meta.uri!r}: scene_row scene_key {row['scene_key']!r} != derived {key!r}"
        )
    table = scenes_table([row])  # validates status and column names before anything is written

    det_path = None
    if detections_table is not None:
        det_path = detections_relpath(key, dt)
        write_geoparquet(detections_table, store, det_path)
    scene_path = scenes_relpath(key, dt)
    write_parquet(table, store, scene_path)
    log.debug("%s: %s -> %s", scene_meta.uri, status, store.uri(scene_path))
    return SceneWrite(key, det_path, scene_path)
