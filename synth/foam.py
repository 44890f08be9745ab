"""Foam and whitecaps: bright white streaks and blobs that break the dark sea.

Three looks follow from the seed: a whitecap (a small, bright, compact crest), foam streaks
(long thin lines drawn out along the wind, the object's heading) and a diffuse foam patch.
They are hard negatives: white on dark, like callosities, but with no whale around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from synth.canvas import blend, open_frame
from synth.noise import derive_seed, point_noise
from synth.objects import SceneObject

__all__ = ["FoamLook", "draw_foam", "foam_capsule", "foam_look"]

_WHITE = (0.86, 0.92, 0.93, 0.72)


@dataclass(frozen=True)
class FoamLook:
    radius: float  # px, everything lies within it
    blobs: np.ndarray  # (k, 5): along, across, radius_along, radius_across (px), strength
    brightness: float
    threshold: float
    streak: float  # texture stretch along the wind


@lru_cache(maxsize=4096)
def foam_look(obj: SceneObject) -> FoamLook:
    rng = np.random.default_rng(derive_seed(obj.seed, 0xF0A3))
    variant = rng.choice(("whitecap", "streaks", "patch"), p=(0.4, 0.35, 0.25))
    if variant == "whitecap":
        r = rng.uniform(4, 12) * obj.scale
        k, along, across, strength, streak = rng.integers(1, 4), (0.3, 0.6), (0.15, 0.35), 1.6, 1.5
    elif variant == "streaks":
        r = rng.uniform(20, 70) * obj.scale
        k, along, across, strength, streak = rng.integers(2, 7), (0.3, 0.8), (0.02, 0.06), 1.2, 5.0
    else:
        r = rng.uniform(12, 40) * obj.scale
        k, along, across, strength, streak = rng.integers(3, 9), (0.2, 0.45), (0.12, 0.3), 0.9, 2.0
    blobs = np.column_stack(
        [
            rng.uniform(-0.6, 0.6, k) * r,
            rng.uniform(-0.35, 0.35, k) * r * (0.4 if variant == "streaks" else 1.0),
            np.maximum(rng.uniform(*along, k) * r, 1.5),
            np.maximum(rng.uniform(*across, k) * r, 1.0),
            rng.uniform(0.6, 1.0, k) * strength,
        ]
    )
    return FoamLook(
        radius=float(r),
        blobs=blobs,
        brightness=rng.uniform(0.7, 1.05),
        threshold=rng.uniform(0.3, 0.45),
        streak=streak,
    )


def foam_capsule(obj: SceneObject):
    r = foam_look(obj).radius * 1.3 + 3.0
    return (obj.cx, obj.cy), (obj.cx, obj.cy), r


def draw_foam(canvas: np.ndarray, col_off: int, row_off: int, obj: SceneObject) -> None:
    look = foam_look(obj)
    (cx, cy), _, r = foam_capsule(obj)
    frame = open_frame(canvas, col_off, row_off, (cx - r, cy - r, cx + r, cy + r))
    if frame is None:
        return
    p, q = frame.local(cx, cy, obj.heading_deg)
    field = np.zeros(p.shape, np.float32)
    for bp, bq, rp, rq, strength in look.blobs:
        dp = (p - np.float32(bp)) / np.float32(rp)
        dq = (q - np.float32(bq)) / np.float32(rq)
        field += np.float32(strength) * np.exp(-(dp * dp + dq * dq))
    seed = derive_seed(obj.seed, 0xF0A4)
    stretch = np.float32(look.streak)
    texture = point_noise(p / (np.float32(2.0) * stretch), q / np.float32(1.6), seed)
    texture += np.float32(0.6) * point_noise(p / np.float32(6), q / np.float32(4), seed + 1)
    alpha = np.clip((field * texture - np.float32(look.threshold)) * np.float32(2.2), 0, 0.97)
    blend(frame.view, [np.float32(c * look.brightness) for c in _WHITE], alpha)
