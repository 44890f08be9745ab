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

from reports.keys import parameters_text, scene_key
from reports.schema import SCENE_STATUSES
from tiling.scene import Scene

__all__ = ["Attempt", "RunStamp", "SceneRun"]


@dataclass(frozen=True)
class RunStamp:
    """What produced a result: the run, the model weights, the mode and the backend.

    ``backend`` is the label of the backend that scored (e.g. ``"torch:cpu"``); ``parameters``
    the run's other settings (threshold, stride, …), kept read-only for logs and reports.
    ``key_parameters`` are the result-affecting ones (JSON values): with the scene, model and
    mode they identify a result (:meth:`scene_key`), so other settings never overwrite it.
    """

    run_id: str
    model_sha256: str
    mode: str
    backend: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    key_parameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("run_id", "model_sha256", "mode", "backend"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"RunStamp.{name}={value!r}, expected a non-empty string")
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))
        object.__setattr__(self, "key_parameters", MappingProxyType(dict(self.key_parameters)))
        parameters_text(self.key_parameters)  # JSON or a ValueError naming them, now

    def scene_key(self, scene_uri: str, scene_version: str) -> str:
        """The key of this run's result for one scene version (``reports.keys.scene_key``)."""
        return scene_key(
            scene_uri, scene_version, self.model_sha256, self.mode, self.key_parameters
        )


@dataclass(frozen=True)
class Attempt:
    """How one scene attempt went: ``status`` (one of ``SCENE_STATUSES``), ``error`` if not ok,
    its duration, its UTC start and end, and ``px_scale``: the native px per scored px it was
    scored at (1.0: native pixels; None when it never was)."""

    status: str
    error: str | None = None
    seconds: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    px_scale: float | None = None

    def __post_init__(self) -> None:
        if self.status not in SCENE_STATUSES:
            raise ValueError(
                f"Attempt.status={self.status!r}, expected one of {', '.join(SCENE_STATUSES)}"
            )
        if self.px_scale is not None and not self.px_scale > 0:
            raise ValueError(f"Attempt.px_scale={self.px_scale!r}, expected native px > 0 or None")


@dataclass(frozen=True)
class SceneRun:
    """A scene version under a run stamp, and its report key (derived once, here)."""

    scene: Scene
    stamp: RunStamp
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self.stamp.scene_key(self.scene.uri, self.scene.version))
