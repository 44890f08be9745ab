"""Stable names: scene keys, detection ids, the ``dt=`` partition and report object paths."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

__all__ = [
    "KEY_HEX_CHARS",
    "detection_id",
    "detection_ids",
    "detections_relpath",
    "parameters_text",
    "partition_date",
    "scene_key",
    "scenes_relpath",
]

_ATTEMPT = re.compile(r"[A-Za-z0-9_-]{1,64}")
KEY_HEX_CHARS = 24  # 96 bits of SHA-256: collisions are not a practical concern at any scan size


def _digest(*parts: str) -> str:
    # Unit separator between fields so ("a", "bc") and ("ab", "c") never hash alike.
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:KEY_HEX_CHARS]


def scene_key(
    scene_uri: str,
    scene_version: str,
    model_sha256: str,
    mode: str,
    parameters: Mapping[str, Any] | None = None,
) -> str:
    """The report key of one result: 24 hex chars of SHA-256 of (scene URI, scene version,
    model, mode, result-affecting ``parameters``).

    ``parameters`` (threshold, NMS IoU, stride, bands, scaling, …; JSON values) are hashed in a
    canonical form (sorted keys), so the same settings always give the same key and other
    settings another one: a run with another threshold never overwrites a result, and a scan
    with other settings sees the scenes as new work. None or ``{}``: the key of the parameters
    that existed before (URI, version, model, mode only). The detections and scenes objects of
    a scene are named by it, so a rerun with the same inputs overwrites the same detections
    (``tests/test_reports.py::test_rerun_overwrites_same_object_with_same_bytes``).
    """
    for name, value in (
        ("scene_uri", scene_uri),
        ("scene_version", scene_version),
        ("model_sha256", model_sha256),
        ("mode", mode),
    ):
        if not isinstance(value, str) or not value:
            raise ValueError(f"scene_key: {name}={value!r}, expected a non-empty string")
    if not parameters:
        return _digest("scene", scene_uri, scene_version, model_sha256, mode)
    return _digest(
        "scene", scene_uri, scene_version, model_sha256, mode, parameters_text(parameters)
    )


def parameters_text(parameters: Mapping[str, Any]) -> str:
    """``parameters`` as canonical JSON (sorted keys, no spaces, tuples as lists)."""
    try:
        return json.dumps(dict(parameters), sort_keys=True, separators=(",", ":"))
    except TypeError as err:
        raise ValueError(f"parameters={dict(parameters)!r}: values must be JSON ({err})") from err


def _box_text(px_box) -> str:
    box = np.asarray(px_box, dtype=np.float64)
    if box.shape != (4,):
        raise ValueError(f"px_box: shape {box.shape}, expected (4,) [xmin, ymin, xmax, ymax]")
    if not np.all(np.isfinite(box)):
        raise ValueError(f"px_box: {box.tolist()} is not finite")
    # Round to 1e-3 px so float noise (e.g. from a different region split) keeps the id;
    # "+ 0.0" turns -0.0 into 0.0 so it formats the same.
    return ",".join(f"{v:.3f}" for v in (np.round(box, 3) + 0.0))


def detection_id(scene_key: str, px_box) -> str:
    """Stable id of one detection: 24 hex chars of SHA-256 of the scene key and the box.

    ``px_box`` is ``[px_xmin, px_ymin, px_xmax, px_ymax]`` in scene pixels, rounded to
    1e-3 px before hashing. The scene key already covers scene URI, version, model and mode;
    two identical boxes in one scene share an id (NMS output has none).
    """
    return _digest("detection", scene_key, _box_text(px_box))


def detection_ids(scene_key: str, px_boxes: np.ndarray) -> list[str]:
    """``detection_id`` for each row of ``px_boxes`` (N, 4)."""
    boxes = np.asarray(px_boxes, dtype=np.float64).reshape(-1, 4)
    return [detection_id(scene_key, box) for box in boxes]


def partition_date(scene_modified: datetime) -> str:
    """The ``dt`` partition value ``YYYY-MM-DD`` for a scene version.

    ``scene_modified`` is the time of the *scene version* — S3 ``LastModified`` or the local
    file's mtime — as a timezone-aware ``datetime``; its UTC date is used. It is deliberately
    **not** the run date: a rerun on another day must land in the same ``dt=`` folder, so it
    overwrites the same object instead of adding a second copy. (One corner remains: the same
    bytes uploaded again get a new LastModified but the same ETag, hence the same key under a
    new ``dt``; the ledger's ``done_keys`` skips such a scene unless a rerun is forced.)
    """
    if not isinstance(scene_modified, datetime):
        raise ValueError(f"scene_modified={scene_modified!r}, expected a datetime")
    if scene_modified.tzinfo is None or scene_modified.utcoffset() is None:
        raise ValueError(
            f"scene_modified={scene_modified!r} is naive; pass a timezone-aware datetime "
            "(e.g. datetime.fromtimestamp(st_mtime, tz=UTC))"
        )
    return scene_modified.astimezone(UTC).date().isoformat()


def detections_relpath(scene_key: str, dt: str) -> str:
    """``detections/dt=YYYY-MM-DD/<key>.parquet``, relative to the reports root."""
    return f"detections/dt={dt}/{scene_key}.parquet"


def scenes_relpath(scene_key: str, dt: str, attempt: str | None = None) -> str:
    """``scenes/dt=YYYY-MM-DD/<key>.<attempt>.parquet`` (``<key>.parquet`` without an attempt).

    Each attempt (``attempt`` = the run id) gets its own object, so no write ever replaces a
    ledger row that a compaction (reports.compact) is reading; the latest attempt wins.
    """
    if attempt is None:
        return f"scenes/dt={dt}/{scene_key}.parquet"
    if not _ATTEMPT.fullmatch(attempt):
        attempt = _digest("attempt", attempt)
    return f"scenes/dt={dt}/{scene_key}.{attempt}.parquet"
