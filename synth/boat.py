"""Boats: a bright hull with deck and cabin, and, when under way, a white wake.

A hard negative: bright, elongated and pointed at one end, with white water behind. The
anchor is the hull centre; the heading is the bow's compass direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from synth.canvas import blend, edge, open_frame
from synth.noise import derive_seed, point_noise
from synth.objects import SceneObject

__all__ = ["BoatLook", "boat_capsule", "boat_look", "draw_boat"]

_HULLS = (  # R, G, B, NIR
    (0.92, 0.92, 0.90, 0.80),
    (0.75, 0.77, 0.78, 0.65),
    (0.90, 0.42, 0.10, 0.70),
    (0.75, 0.12, 0.10, 0.60),
    (0.12, 0.25, 0.60, 0.35),
    (0.90, 0.80, 0.15, 0.75),
)
_DECKS = ((0.80, 0.80, 0.78, 0.70), (0.55, 0.42, 0.28, 0.55), (0.45, 0.47, 0.50, 0.45))
_FOAM = (0.86, 0.92, 0.93, 0.72)
_KELVIN = np.tan(np.deg2rad(19.47))  # half-angle of a ship's wake

# hull half-width (fraction of half the beam) along the hull (fraction of length), stern first
_HULL_P = np.array([-0.5, -0.3, 0.1, 0.3, 0.45, 0.5])
_HULL_W = np.array([0.85, 1.0, 1.0, 0.75, 0.3, 0.0])


@dataclass(frozen=True)
class BoatLook:
    length: float  # px
    beam: float  # px
    hull: tuple[float, ...]
    deck: tuple[float, ...]
    cabin: tuple[float, float, float]  # start, end (fractions of length), half-width fraction
    wake: float  # px behind the stern; 0 when moored
    wake_strength: float


@lru_cache(maxsize=4096)
def boat_look(obj: SceneObject) -> BoatLook:
    rng = np.random.default_rng(derive_seed(obj.seed, 0xB0A7))
    length = rng.uniform(45, 140) * obj.scale
    start = rng.uniform(-0.35, -0.05)
    return BoatLook(
        length=float(length),
        beam=float(length * rng.uniform(0.3, 0.42)),
        hull=_HULLS[rng.integers(len(_HULLS))],
        deck=_DECKS[rng.integers(len(_DECKS))],
        cabin=(start, start + rng.uniform(0.15, 0.35), rng.uniform(0.45, 0.75)),
        wake=float(length * rng.uniform(1.5, 5.0)) if rng.random() < 0.7 else 0.0,
        wake_strength=rng.uniform(0.5, 1.0),
    )


def boat_capsule(obj: SceneObject):
    look = boat_look(obj)
    h = np.deg2rad(obj.heading_deg)
    fx, fy = np.sin(h), -np.cos(h)
    front, back = look.length / 2, look.length / 2 + look.wake
    radius = max(look.beam / 2, _KELVIN * look.wake + look.beam) + 3.0
    return (
        (obj.cx + fx * front, obj.cy + fy * front),
        (obj.cx - fx * back, obj.cy - fy * back),
        radius,
    )


def draw_boat(canvas: np.ndarray, col_off: int, row_off: int, obj: SceneObject) -> None:
    look = boat_look(obj)
    (x0, y0), (x1, y1), r = boat_capsule(obj)
    box = (min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r)
    frame = open_frame(canvas, col_off, row_off, box)
    if frame is None:
        return
    p, q = frame.local(obj.cx, obj.cy, obj.heading_deg)
    absq = np.abs(q)
    length, half_beam = np.float32(look.length), np.float32(look.beam / 2)
    if look.wake > 0:
        _draw_wake(frame.view, p, absq, look, obj.seed)
    half = np.interp(p / length, _HULL_P, _HULL_W, left=-1, right=-1).astype(np.float32)
    half *= half_beam
    blend(frame.view, look.hull, edge(half - absq))
    blend(frame.view, look.deck, edge(half - np.float32(2.5) - absq))
    c0, c1, cw = look.cabin
    f = p / length
    cabin = np.minimum(
        np.minimum(f - np.float32(c0), np.float32(c1) - f) * length,
        np.float32(cw) * half_beam - absq,
    )
    blend(frame.view, (0.88, 0.89, 0.90, 0.75), edge(cabin))
    window = np.minimum(
        np.minimum(f - np.float32(c1), np.float32(c1 + 0.04) - f) * length,
        np.float32(cw) * half_beam - absq,
    )
    blend(frame.view, (0.1, 0.12, 0.14, 0.1), edge(window))


def _draw_wake(view, p, absq, look: BoatLook, seed: int) -> None:
    behind = np.maximum(-p - np.float32(look.length / 2), np.float32(0.0))
    fade = np.clip(np.float32(1.0) - behind / np.float32(look.wake), 0, 1)
    fade *= fade
    started = edge(-p - np.float32(look.length * 0.4), 3.0)
    width = np.float32(look.beam * 0.45) + behind * np.float32(0.08)
    turbulent = edge(width - absq, 3.0) * fade * started
    arm_width = np.float32(1.5) + behind * np.float32(0.03)
    arms = np.clip(np.float32(1.0) - np.abs(absq - behind * np.float32(_KELVIN)) / arm_width, 0, 1)
    arms *= fade * started * np.float32(0.7)
    texture = point_noise(p / np.float32(4), absq / np.float32(2), derive_seed(seed, 0xB0A8))
    texture += np.float32(0.5) * point_noise(p / np.float32(11), absq / np.float32(5), seed)
    alpha = np.clip(
        np.maximum(turbulent, arms) * texture * np.float32(1.4 * look.wake_strength), 0, 0.95
    )
    blend(view, _FOAM, alpha)
