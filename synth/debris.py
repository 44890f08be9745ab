"""Floating debris: a few small irregular bits — kelp, rope, plastic, a buoy.

A hard negative at the scale of callosity patches: small, sometimes bright, sometimes dark,
but scattered on open water instead of arranged on a dark head.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from synth.canvas import blend, edge, open_frame
from synth.noise import derive_seed, point_noise
from synth.objects import SceneObject

__all__ = ["DebrisLook", "debris_capsule", "debris_look", "draw_debris"]

_COLOURS = (  # R, G, B, NIR
    (0.25, 0.20, 0.08, 0.35),  # kelp
    (0.45, 0.45, 0.42, 0.40),  # grey plastic
    (0.90, 0.40, 0.10, 0.65),  # buoy orange
    (0.82, 0.82, 0.78, 0.70),  # white plastic
    (0.18, 0.38, 0.22, 0.30),  # green rope
    (0.05, 0.05, 0.06, 0.10),  # black rubber
    (0.55, 0.45, 0.30, 0.50),  # wood
)


@dataclass(frozen=True)
class DebrisLook:
    radius: float
    bits: np.ndarray  # (k, 6): along, across, half_length, half_width, angle, colour index


@lru_cache(maxsize=4096)
def debris_look(obj: SceneObject) -> DebrisLook:
    rng = np.random.default_rng(derive_seed(obj.seed, 0xDEB))
    radius = rng.uniform(3, 25) * obj.scale
    k = rng.integers(1, 9)
    half_width = rng.uniform(0.8, 3.0, k)
    half_length = half_width * np.where(
        rng.random(k) < 0.3, rng.uniform(3, 8, k), rng.uniform(1, 2, k)
    )
    bits = np.column_stack(
        [
            rng.uniform(-1, 1, k) * radius * 0.7,
            rng.uniform(-1, 1, k) * radius * 0.7,
            half_length,
            half_width,
            rng.uniform(0, np.pi, k),
            rng.integers(0, len(_COLOURS), k),
        ]
    )
    return DebrisLook(radius=float(radius + 25), bits=bits)


def debris_capsule(obj: SceneObject):
    r = debris_look(obj).radius
    return (obj.cx, obj.cy), (obj.cx, obj.cy), r


def draw_debris(canvas: np.ndarray, col_off: int, row_off: int, obj: SceneObject) -> None:
    look = debris_look(obj)
    r = look.radius
    frame = open_frame(canvas, col_off, row_off, (obj.cx - r, obj.cy - r, obj.cx + r, obj.cy + r))
    if frame is None:
        return
    p, q = frame.local(obj.cx, obj.cy, obj.heading_deg)
    rough = point_noise(p / np.float32(1.5), q / np.float32(1.5), derive_seed(obj.seed, 0xDEC))
    rough -= np.float32(0.5)
    for bp, bq, hl, hw, angle, colour in look.bits:
        ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dp, dq = p - np.float32(bp), q - np.float32(bq)
        a = (dp * ca + dq * sa) / np.float32(hl)
        b = (dq * ca - dp * sa) / np.float32(hw)
        d = (np.float32(1.0) - np.sqrt(a * a + b * b)) * np.float32(hw) + rough * np.float32(1.2)
        blend(frame.view, _COLOURS[int(colour)], edge(d) * np.float32(0.95))
