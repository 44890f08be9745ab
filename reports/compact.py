"""Compaction of the scenes table: each ``dt=`` partition's attempt objects → one segment.

``jobs.detect`` writes one small object per scene attempt, so a ledger of 1,000,000 scenes is
1,000,000 objects, and planning a scan would download every one. Compaction folds a partition's
objects into ``scenes/dt=D/compacted-<id>.parquet`` holding each scene key's latest attempt (the
rule of ``reports.ledger.LATEST_ORDER``), then deletes exactly the objects it read. The segment
keeps the table's layout: DuckDB's ``scenes/dt=*/*.parquet`` glob, Athena's partition
projection and pyarrow's dataset discovery read it like any attempt object.

Safe alongside writers: attempts are never overwritten (each has its own name), so an object
that appears while a partition is compacted is left for next time; a compaction killed between
writing its segment and deleting its inputs leaves duplicate rows that the latest-attempt rule
already collapses, and the next compaction removes.
"""

from __future__ import annotations

import logging
import posixpath
from collections import defaultdict
from dataclasses import dataclass

from reports.geoparquet import write_parquet
from reports.ledger import latest_attempts, new_attempt_id, read_scenes, scene_relpaths
from reports.store import Store

__all__ = ["SEGMENT_PREFIX", "CompactSummary", "compact"]

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "compacted-"


@dataclass(frozen=True)
class CompactSummary:
    """What one compaction did: partitions rewritten, objects and rows read, rows kept."""

    partitions: int
    objects_in: int
    rows_in: int
    rows_out: int


def compact(
    store: Store, min_objects: int = 2, partitions: set[str] | None = None
) -> CompactSummary:
    """Compact every ``scenes/dt=*`` partition of ``store`` holding ≥ ``min_objects`` objects.

    ``partitions``: only these ``dt`` values (e.g. the ones a scan just wrote to).
    """
    if min_objects < 2:
        raise ValueError(f"min_objects={min_objects}: must be ≥ 2 (one object is compact)")
    by_folder: dict[str, list[str]] = defaultdict(list)
    for relpath in scene_relpaths(store):
        by_folder[posixpath.dirname(relpath)].append(relpath)
    done, objects_in, rows_in, rows_out = 0, 0, 0, 0
    for folder, relpaths in sorted(by_folder.items()):
        dt = folder.rpartition("dt=")[2]
        if len(relpaths) < min_objects or (partitions is not None and dt not in partitions):
            continue
        table = read_scenes(store, relpaths=relpaths)
        latest = latest_attempts(table)
        segment = f"{folder}/{SEGMENT_PREFIX}{new_attempt_id()}.parquet"
        write_parquet(latest, store, segment)  # whole and durable before any input goes
        store.delete(relpaths)
        log.info("%s: %d object(s), %d row(s) → %d row(s)", store.uri(segment), len(relpaths),
                 len(table), len(latest))  # fmt: skip
        done, objects_in = done + 1, objects_in + len(relpaths)
        rows_in, rows_out = rows_in + len(table), rows_out + len(latest)
    return CompactSummary(done, objects_in, rows_in, rows_out)
