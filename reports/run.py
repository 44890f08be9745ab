"""One scene attempt of one run: the run stamp, the attempt's outcome, and the scene key.

These live in ``reports`` because the detections writer and the ledger consume them and
``reports`` may not import ``jobs``; ``jobs`` builds them. The scene itself is
``tiling.scene.Scene`` (``tiling`` is below ``reports``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from reports.keys import scene_key
from reports.schema import SCENE_STATUSES
from tiling.scene import Scene

__all__ = ["Attempt", "RunStamp", "SceneRun"]


@dataclass(frozen=True)
class RunStamp:
    """What produced a result: the run, the model weights, the mode and the backend.

    ``backend`` is the label of the backend that scored (e.g. ``"torch:cpu"``); ``parameters``
    the run's other settings (threshold, stride, …), kept read-only for logs and reports.
    """

    run_id: str
    model_sha256: str
    mode: str
    backend: str
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("run_id", "model_sha256", "mode", "backend"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"RunStamp.{name}={value!r}, expected a non-empty string")
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))


@dataclass(frozen=True)
class Attempt:
    """How one scene attempt went: ``status`` (one of ``SCENE_STATUSES``), ``error`` if not ok,
    its duration and its UTC start and end."""

    status: str
    error: str | None = None
    seconds: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.status not in SCENE_STATUSES:
            raise ValueError(
                f"Attempt.status={self.status!r}, expected one of {', '.join(SCENE_STATUSES)}"
            )


@dataclass(frozen=True)
class SceneRun:
    """A scene version under a run stamp, and its report key (derived once, here)."""

    scene: Scene
    stamp: RunStamp
    key: str = field(init=False)

    def __post_init__(self) -> None:
        key = scene_key(
            self.scene.uri, self.scene.version, self.stamp.model_sha256, self.stamp.mode
        )
        object.__setattr__(self, "key", key)
