"""The scan ledger: the scenes table, read back from a store and written one scene at a time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from reports.geoparquet import scenes_table, write_geoparquet, write_parquet
from reports.keys import detections_relpath, parameters_text, partition_date, scenes_relpath
from reports.run import Attempt, SceneRun
from reports.schema import SCENES_SCHEMA
from reports.store import Store
from tiling.geo import crs_string

__all__ = [
    "LATEST_ORDER",
    "SceneWrite",
    "conform",
    "done_keys",
    "latest_attempts",
    "read_ledger",
    "read_scenes",
    "scene_relpaths",
    "write_scene_result",
]

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


def scene_relpaths(store: Store) -> list[str]:
    """Every scenes object of ``store``: attempt files and compacted segments."""
    return [p for p in store.list("scenes/") if p.endswith(".parquet")]


def read_scenes(
    store: Store, columns: list[str] | None = None, relpaths: list[str] | None = None
) -> pa.Table:
    """Every attempt row of the scenes table in ``store`` (or of ``relpaths``), in ``SCENES_SCHEMA``.

    Read through ``pyarrow.dataset``: only ``columns`` (default all) leave the files, so planning
    over a compacted ledger of 1M rows reads a few columns of a few files. Several rows may share
    a scene key (reruns, a segment and a newer attempt); :func:`latest_attempts` picks one.
    An empty table with the schema when there are none.
    """
    schema = (
        SCENES_SCHEMA if columns is None else pa.schema([SCENES_SCHEMA.field(c) for c in columns])
    )
    relpaths = scene_relpaths(store) if relpaths is None else relpaths
    if not relpaths:
        return schema.empty_table()
    # Only now: a first run into a new root has no scene files and skips pyarrow.dataset's import.
    import pyarrow.dataset as pads

    fs, paths = store.arrow_paths(relpaths)
    try:
        # Files older than an appended column lack it: the dataset schema fills it with nulls.
        dataset = pads.dataset(paths, schema=SCENES_SCHEMA, format="parquet", filesystem=fs)
        table = dataset.to_table(columns=schema.names)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{store.uri('scenes')!r}: unreadable scenes table ({err})") from err
    return conform(table, schema)


# The one rule for reruns (README "Reruns"): the latest attempt of a scene key wins — by
# ``finished_at``, ties broken by ``run_id`` (which starts with the run's UTC start time).
# scan, report, evaluate and the SQL examples (view ``latest_scenes`` in reports/queries/) all
# use it; a detections file counts only while its key's latest attempt is ``ok``.
LATEST_ORDER = (("finished_at", "descending"), ("run_id", "descending"))


def latest_attempts(table: pa.Table, by: str = "scene_key") -> pa.Table:
    """One row per ``by`` value (default: per scene key): its latest attempt (``LATEST_ORDER``).

    Needs ``by``, ``finished_at`` and ``run_id``; rows in no particular order. ``by="scene_uri"``
    applies the same rule per scene, across models and settings (``whalescan evaluate``).
    """
    keys = table.column(by)
    if len(table) == 0 or pc.count_distinct(keys).as_py() == len(table):
        return table  # one attempt per key (a compacted ledger): nothing to choose, no copy
    ordered = table.sort_by([(by, "ascending"), *LATEST_ORDER])
    keys = ordered.column(by).combine_chunks()
    first = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))
    mask = pa.concat_arrays([pa.array([True]), first.fill_null(True)])
    return ordered.filter(mask)


def read_ledger(store: Store, columns: list[str] | None = None) -> pa.Table:
    """The ledger: :func:`read_scenes` reduced to each scene key's latest attempt."""
    need = ["scene_key", "finished_at", "run_id"]
    wanted = columns or list(SCENES_SCHEMA.names)
    table = latest_attempts(read_scenes(store, wanted + [c for c in need if c not in wanted]))
    return table.select(wanted)


def done_keys(store: Store, statuses: tuple[str, ...] = ("ok",)) -> set[str]:
    """Scene keys whose latest attempt's status is in ``statuses`` (default: done = ``ok``)."""
    table = read_ledger(store, columns=["scene_key", "status"])
    done = table.filter(pc.is_in(table.column("status"), pa.array(list(statuses), pa.string())))
    return set(done.column("scene_key").to_pylist())


def write_scene_result(
    store: Store,
    run: SceneRun,
    attempt: Attempt,
    detections_table: pa.Table | None = None,
) -> SceneWrite:
    """Record one scene attempt: its detections file first, then its ledger row.

    The row's columns come from the scene (``scene_uri``, ``scene_version``, ``width``,
    ``height``, ``bands``, ``dtype``, ``native_crs``, ``megapixels``, ``scene_modified``,
    ``gsd_m``), the run stamp (``mode``, ``backend``, ``model_sha256``, ``run_id``), the attempt
    (``status``, ``error``, ``seconds``, ``started_at``, ``finished_at``, ``px_scale``),
    ``run.key`` and
    ``detections`` = the table's row count.

    * ``status="ok"``: ``detections_table`` is required; it is written (and durable) before the
      scene row, so a scene is in the ledger only once its detections are.
    * ``"failed"`` / ``"skipped"``: only the scene row (``error`` should say why).

    Detections are named by the scene key (URI, version, model, mode, parameters) and ``dt``
    from the scene version's time, so a rerun overwrites them; each attempt's ledger row is a new
    object (``scenes_relpath(..., attempt=run_id)``) and the latest attempt wins
    (``LATEST_ORDER``). A failed or skipped attempt removes the key's detections after its row
    is written. If ``run.scene.modified`` is None (the scene could not even be stat'ed), ``dt``
    falls back to ``attempt.started_at`` or now.
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
        "gsd_m": scene.gsd_m,
        "px_scale": attempt.px_scale,
        "parameters": parameters_text(stamp.key_parameters) if stamp.key_parameters else None,
    }
    table = scenes_table([row])  # validates the row before anything is written

    det_path = detections_relpath(key, dt)
    scene_path = scenes_relpath(key, dt, attempt=stamp.run_id)
    if detections_table is not None:
        write_geoparquet(detections_table, store, det_path)
    write_parquet(table, store, scene_path)
    if detections_table is None:
        # The latest attempt wins: detections of an earlier ok attempt of this key would now
        # contradict the ledger. Readers also join on the latest attempt, so a crash between
        # these two writes leaves nothing wrong, only a file to remove next time.
        store.delete([det_path])
    log.debug("%s: %s -> %s", scene.uri, status, store.uri(scene_path))
    return SceneWrite(key, det_path if detections_table is not None else None, scene_path)


def new_attempt_id() -> str:
    """A unique, time-ordered id for an attempt without a run id: ``YYYYmmddTHHMMSSZ-<hex>``."""
    import secrets

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)
