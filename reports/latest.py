"""The latest attempt per scene in a reports root, and the detections that attempt wrote."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from reports.ledger import conform, latest_attempts, read_scenes
from reports.schema import DETECTIONS_SCHEMA
from reports.store import Store

__all__ = ["detection_relpaths", "latest_detections", "latest_rows", "read_detections"]


def latest_rows(store: Store, by: str = "scene_uri") -> list[dict[str, Any]]:
    """Ledger rows, one per ``by`` value (``scene_uri``: per scene; ``scene_key``: per scene,
    model, mode and settings): its latest attempt, by the ledger's one rule
    (``reports.ledger.LATEST_ORDER``: latest ``finished_at``, then ``run_id``). Sorted by ``by``."""
    latest = latest_attempts(read_scenes(store), by=by)
    return sorted(latest.to_pylist(), key=lambda r: r[by])


def detection_relpaths(store: Store) -> dict[str, str]:
    """Scene key → relpath of its detections file (the latest ``dt=`` when a key has two)."""
    return {Path(p).stem: p for p in store.list("detections/") if p.endswith(".parquet")}


def read_detections(
    store: Store, relpath: str | None, columns: Iterable[str] | None = None
) -> pa.Table:
    """One detections file in ``DETECTIONS_SCHEMA`` (or its ``columns``), best score first; an
    empty table when ``relpath`` is None.

    Equal scores are ordered by box position (``px_ymin``, ``px_xmin``), then ``detection_id``:
    an order that depends on the boxes alone, not on where the scene or reports live (detection
    ids hash the scene URI), so a PR curve and AP with tied scores are the same for a scene read
    from a local copy and from S3.
    """
    names = list(columns) if columns is not None else DETECTIONS_SCHEMA.names
    schema = pa.schema([DETECTIONS_SCHEMA.field(c) for c in names])
    if relpath is None:
        return schema.empty_table()
    try:
        table = pq.read_table(io.BytesIO(store.read_bytes(relpath)))
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{store.uri(relpath)!r}: not a readable detections file") from err
    table = conform(table, schema)
    order = [("score", "descending"), ("px_ymin", "ascending"), ("px_xmin", "ascending"),
             ("detection_id", "ascending")]  # fmt: skip
    if "score" in names:
        table = table.sort_by([(c, how) for c, how in order if c in names])
    return table


def latest_detections(store: Store, columns: Iterable[str] | None = None) -> pa.Table:
    """The detections of each scene's latest attempt (``ok`` ones; see :func:`latest_rows`),
    in ``DETECTIONS_SCHEMA`` (or its ``columns``), scene by scene, best score first."""
    paths = detection_relpaths(store)
    names = list(columns) if columns is not None else DETECTIONS_SCHEMA.names
    tables = [
        read_detections(store, paths.get(r["scene_key"]), names)
        for r in latest_rows(store)
        if r["status"] == "ok"
    ]
    return pa.concat_tables(tables) if tables else read_detections(store, None, names)
