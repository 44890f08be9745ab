"""Draw sea and objects into any window of global pixel space — shared by chips and scenes.

A window is ``(col_off, row_off, width, height)`` in global pixels; the result is a float32
band-planar canvas ``(C, height, width)`` of reflectances (C = 3: R, G, B; C = 4: + NIR).
Everything drawn is a pure function of the global pixel, the water seed and the objects, so
any tiling of a scene into windows reproduces the scene drawn at once, bit for bit.

Scale: :data:`FACE_SIZE_PX` = 32 px is the head's long axis at :data:`GSD_M` = 0.10 m/px
(a ~3.2 m right-whale head); a face in a chip is exactly as large as in a scene.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from synth.boat import boat_capsule, draw_boat
from synth.canvas import Box
from synth.debris import debris_capsule, draw_debris
from synth.foam import draw_foam, foam_capsule
from synth.glint import draw_glint, glint_capsule
from synth.objects import KINDS, NEGATIVE_KINDS, SceneObject
from synth.units import FACE_SIZE_PX, GSD_M, SIZE_JITTER
from synth.water import draw_water
from synth.whale import draw_whale, face_box, head_centre, whale_capsule

__all__ = [
    "FACE_SIZE_PX",
    "GSD_M",
    "KINDS",
    "NEGATIVE_KINDS",
    "SIZE_JITTER",
    "Box",
    "Capsule",
    "SceneObject",
    "draw_object",
    "face_box",
    "head_centre",
    "object_box",
    "object_capsule",
    "render_window",
    "to_uint8",
]

Capsule = tuple[tuple[float, float], tuple[float, float], float]
"""Segment end points (x, y) and radius, global px: an object draws nothing outside it."""

_KIND = {
    "whale": (whale_capsule, draw_whale),
    "body": (whale_capsule, draw_whale),
    "flukes": (whale_capsule, draw_whale),
    "foam": (foam_capsule, draw_foam),
    "boat": (boat_capsule, draw_boat),
    "debris": (debris_capsule, draw_debris),
    "glint": (glint_capsule, draw_glint),
}


def object_capsule(obj: SceneObject) -> Capsule:
    """Where ``obj`` may paint: a capsule (segment end points and radius) in global px."""
    return _KIND[obj.kind][0](obj)


def object_box(obj: SceneObject) -> Box:
    """Axis-aligned box ``(xmin, ymin, xmax, ymax)`` (global px) that holds all of ``obj``."""
    (x0, y0), (x1, y1), r = object_capsule(obj)
    return min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r


def draw_object(canvas: np.ndarray, col_off: int, row_off: int, obj: SceneObject) -> None:
    """Paint ``obj`` into ``canvas`` (C, h, w); its pixel [:, 0, 0] is global (col_off, row_off)."""
    draw: Callable = _KIND[obj.kind][1]
    draw(canvas, col_off, row_off, obj)


def render_window(
    col_off: int,
    row_off: int,
    width: int,
    height: int,
    objects: Sequence[SceneObject],
    water_seed: int,
    channels: int = 3,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """Sea plus ``objects`` (drawn in order) in a window: float32 (channels, height, width).

    ``boxes`` (N, 4), the :func:`object_box` of each object, lets a caller with many objects
    skip the ones outside the window without recomputing them.
    """
    canvas = draw_water(col_off, row_off, width, height, water_seed, channels)
    if not objects:
        return canvas
    if boxes is None:
        boxes = np.array([object_box(o) for o in objects], dtype=np.float64).reshape(-1, 4)
    hit = (
        (boxes[:, 0] < col_off + width)
        & (boxes[:, 2] > col_off)
        & (boxes[:, 1] < row_off + height)
        & (boxes[:, 3] > row_off)
    )
    for i in np.flatnonzero(hit):
        draw_object(canvas, col_off, row_off, objects[i])
    return canvas


def to_uint8(canvas: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Reflectance canvas → uint8 digital numbers 1..255 (0 is reserved for nodata).

    ``inplace=True`` reuses ``canvas`` as scratch space (its values are lost).
    """
    scaled = np.multiply(canvas, np.float32(255.0), out=canvas if inplace else None)
    scaled += np.float32(0.5)
    np.clip(scaled, 1.0, 255.0, out=scaled)
    return scaled.astype(np.uint8)
