"""Sun glint: a patch of bright specular sparkles where wave facets mirror the sun.

Sparkles are tiny, saturated and white, strewn over a soft elongated envelope that also
brightens the water a little. A hard negative for the bright callosity specks of a face.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from synth.canvas import blend, open_frame
from synth.noise import derive_seed, point_noise
from synth.objects import SceneObject

__all__ = ["GlintLook", "draw_glint", "glint_capsule", "glint_look"]

_SUN = (1.0, 1.0, 0.97, 0.95)


@dataclass(frozen=True)
class GlintLook:
    radius_along: float
    radius_across: float
    threshold: float
    haze: float
    grain: float


@lru_cache(maxsize=4096)
def glint_look(obj: SceneObject) -> GlintLook:
    rng = np.random.default_rng(derive_seed(obj.seed, 0x6117))
    r = rng.uniform(12, 90) * obj.scale
    return GlintLook(
        radius_along=float(r),
        radius_across=float(r / rng.uniform(1, 3)),
        threshold=rng.uniform(0.72, 0.86),
        haze=rng.uniform(0.03, 0.2),
        grain=rng.uniform(1.0, 2.2),
    )


def glint_capsule(obj: SceneObject):
    return (obj.cx, obj.cy), (obj.cx, obj.cy), glint_look(obj).radius_along * 1.6 + 2.0


def draw_glint(canvas: np.ndarray, col_off: int, row_off: int, obj: SceneObject) -> None:
    look = glint_look(obj)
    r = glint_capsule(obj)[2]
    frame = open_frame(canvas, col_off, row_off, (obj.cx - r, obj.cy - r, obj.cx + r, obj.cy + r))
    if frame is None:
        return
    p, q = frame.local(obj.cx, obj.cy, obj.heading_deg)
    a, b = p / np.float32(look.radius_along), q / np.float32(look.radius_across)
    envelope = np.exp(-(a * a + b * b) * np.float32(1.5))
    grain = np.float32(look.grain)
    n = point_noise(p / grain, q / grain, derive_seed(obj.seed, 0x6118))
    sparkle = np.clip((n - np.float32(look.threshold)) / np.float32(1 - look.threshold), 0, 1)
    sparkle *= sparkle
    alpha = np.clip(sparkle * envelope * np.float32(2.0) + envelope * np.float32(look.haze), 0, 1)
    blend(frame.view, _SUN, alpha)
