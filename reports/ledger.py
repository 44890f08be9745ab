"""The scan ledger: the scenes table, read back from a store and written one scene at a time."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from reports.geoparquet import scenes_table, write_geoparquet, write_parquet
from reports.keys import detections_relpath, partition_date, scenes_relpath
from reports.run import Attempt, SceneRun
from reports.schema import SCENES_SCHEMA
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
    run: SceneRun,
    attempt: Attempt,
    detections_table: pa.Table | None = None,
) -> SceneWrite:
    """Record one scene attempt: its detections file first, then its ledger row.

    The row's columns come from the scene (``scene_uri``, ``scene_version``, ``width``,
    ``height``, ``bands``, ``dtype``, ``native_crs``, ``megapixels``, ``scene_modified``), the
    run stamp (``mode``, ``backend``, ``model_sha256``, ``run_id``), the attempt (``status``,
    ``error``, ``seconds``, ``started_at``, ``finished_at``), ``run.key`` and
    ``detections`` = the table's row count.

    * ``status="ok"``: ``detections_table`` is required; it is written (and durable) before the
      scene row, so a scene is in the ledger only once its detections are.
    * ``"failed"`` / ``"skipped"``: only the scene row (``error`` should say why).

    Both objects are named by the scene key (URI, version, model, mode) and ``dt`` from the
    scene version's time, so a rerun overwrites them. If ``run.scene.modified`` is None (the
    scene could not even be stat'ed), ``dt`` falls back to ``attempt.started_at`` or now.
    """
    scene, stamp, key, status = run.scene, run.stamp, run.key, attempt.status
    if status == "ok" and detections_table is None:
        raise ValueError(f"{scene.uri!r}: status 'ok' needs a detections table")
    if status != "ok" and detections_table is not None:
        raise ValueError(f"{scene.uri!r}: status {status!r} must not carry a detections table")

    dt = partition_date(scene.modified or attempt.started_at or datetime.now(UTC))
    row = {
        "scene_uri": scene.uri,
        "scene_version": scene.version,
        "scene_key": key,
        "width": scene.width,
        "height": scene.height,
        "bands": scene.bands,
        "dtype": scene.dtype,
        "native_crs": crs_string(scene.crs),
        "status": status,
        "error": attempt.error,
        "detections": len(detections_table) if detections_table is not None else None,
        "megapixels": scene.megapixels,
        "seconds": attempt.seconds,
        "mode": stamp.mode,
        "backend": stamp.backend,
        "model_sha256": stamp.model_sha256,
        "run_id": stamp.run_id,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "scene_modified": scene.modified,
    }
    table = scenes_table([row])  # validates the row before anything is written

    det_path = None
    if detections_table is not None:
        det_path = detections_relpath(key, dt)
        write_geoparquet(detections_table, store, det_path)
    scene_path = scenes_relpath(key, dt)
    write_parquet(table, store, scene_path)
    log.debug("%s: %s -> %s", scene.uri, status, store.uri(scene_path))
    return SceneWrite(key, det_path, scene_path)
