"""Calves: a smaller whale swimming beside its mother, its head by her flank.

A calf is a ``whale`` (its face shows and is labelled) at 0.55–0.7 of its mother's size,
heading within 25° of hers, its head 1.5–1.9 mother face lengths to one side and up to one
face length behind her head — close enough that a detector must not merge the two faces.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from synth.objects import SceneObject
from synth.units import FACE_SIZE_PX

__all__ = ["CALF_SIZE", "place_calf"]

CALF_SIZE = (0.55, 0.7)
_TRIES = 12


def place_calf(
    rng: np.random.Generator, mother: SceneObject, fits: Callable[[SceneObject], bool]
) -> SceneObject | None:
    """A calf beside ``mother`` for which ``fits(calf)`` holds, or None after a few tries."""
    for _ in range(_TRIES):
        heading = (mother.heading_deg + rng.uniform(-25, 25)) % 360.0
        h = np.deg2rad(mother.heading_deg)
        forward = np.array([np.sin(h), -np.cos(h)])
        right = np.array([np.cos(h), np.sin(h)])
        length = FACE_SIZE_PX * mother.scale
        side = rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 1.9) * length
        back = rng.uniform(0.0, 1.0) * length
        x, y = np.array([mother.cx, mother.cy]) + side * right - back * forward
        calf = SceneObject(
            "whale",
            float(x),
            float(y),
            float(heading),
            float(mother.scale * rng.uniform(*CALF_SIZE)),
            int(rng.integers(1 << 31)),
        )
        if fits(calf):
            return calf
    return None
