"""North Atlantic right whales seen from above: body, flippers, flukes and the head ("face").

Shapes are written in the whale's own frame in units of its head length ``L``
(``FACE_SIZE_PX * scale`` pixels): ``u`` runs forward along the body from the head centre
(rostrum tip at ``u = +0.5``, blowholes at ``u = -0.5``), ``v`` to the whale's right. The head
is a narrow arched rostrum between bowed lower lips, dark, with whitish/cream callosity
patches: the bonnet at the tip, rostral islands along the midline, lip callosities along the
lower lips, patches above the eyes and behind the blowholes. No two whales share a pattern.

Three kinds share this body: ``whale`` (head visible: a face), ``body`` (the head is under
water: a hard negative) and ``flukes`` (a diving whale's tail: a hard negative).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from synth.canvas import Box, blend, edge, open_frame
from synth.noise import derive_seed, point_noise
from synth.objects import SceneObject
from synth.units import FACE_SIZE_PX

__all__ = ["WhaleLook", "draw_whale", "face_box", "whale_capsule", "whale_look"]

# Half-width of the body outline (units of L) at positions u along the body, tip first.
# The head part (u >= -0.5) is fixed so that the face box depends on heading and scale only.
_HEAD_U = np.array([0.50, 0.47, 0.42, 0.32, 0.18, 0.00, -0.25, -0.50])
_HEAD_W = np.array([0.00, 0.09, 0.14, 0.19, 0.24, 0.28, 0.33, 0.37])
_BODY_U = np.array([-0.90, -1.50, -2.10, -2.70, -3.10, -3.45, -3.70, -3.76])
_BODY_W = np.array([0.46, 0.52, 0.50, 0.40, 0.25, 0.12, 0.08, 0.05])
# Rostrum edge (the lip line): the bowed lower lips lie between it and the outline.
_LIP_U = np.array([0.47, 0.35, 0.15, -0.10, -0.30, -0.50])
_LIP_W = np.array([0.06, 0.10, 0.12, 0.15, 0.22, 0.33])

_CALLOSITY_TINTS = (  # cream, yellowish, pinkish-orange (cyamids), plain white; NIR last
    (0.86, 0.82, 0.70, 0.55),
    (0.88, 0.80, 0.58, 0.55),
    (0.90, 0.74, 0.62, 0.50),
    (0.85, 0.86, 0.84, 0.60),
)
_FOAM = (0.86, 0.92, 0.92, 0.70)


@dataclass(frozen=True)
class WhaleLook:
    """Everything about one whale's appearance that follows from its seed (units of L)."""

    profile_u: np.ndarray  # ascending, for np.interp
    profile_w: np.ndarray
    tail_u: float  # u of the tail stock's end, where the flukes start
    half_span: float  # half the fluke span
    bend: float  # lateral offset of the body behind the head: bend * (u + 0.5)**2
    skin: tuple[float, float, float, float]
    sheen: float
    vis_tail: float
    vis_flipper: float
    vis_head: float
    flipper_angle: float  # radians back from the lateral axis
    callosities: np.ndarray  # (k, 4): u, v, radius_u, radius_v
    callosity_colour: tuple[float, float, float, float]
    lip_line: float
    foam: np.ndarray  # (m, 5): u, v, radius_u, radius_v, strength (may be empty)
    cut_u: float  # kind "body": everything forward of this is under water
    ghost: float  # kind "body": opacity of the submerged head
    fade_u: float  # kind "flukes": the body fades out forward of this

    @property
    def extent_u(self) -> tuple[float, float]:
        """Rear- and front-most u drawn (flukes' trailing tips, rostrum tip)."""
        return self.tail_u - 0.65, 0.5


@lru_cache(maxsize=4096)
def whale_look(obj: SceneObject) -> WhaleLook:
    """The appearance of ``obj`` (a whale, body or flukes), derived from its seed only."""
    rng = np.random.default_rng(derive_seed(obj.seed, 0x3A1E))
    length = rng.uniform(0.92, 1.08)
    width = rng.uniform(0.9, 1.15)
    body_u = -0.5 + (_BODY_U + 0.5) * length
    body_w = _BODY_W * width
    profile_u = np.concatenate([_HEAD_U, body_u])[::-1].copy()
    profile_w = np.concatenate([_HEAD_W, body_w])[::-1].copy()
    tail_u = float(body_u[-2])
    k = rng.uniform(0.028, 0.085)
    tint = rng.uniform(0.95, 1.1), rng.uniform(1.0, 1.1), rng.uniform(1.05, 1.2)
    skin = (k * tint[0], k * tint[1], k * tint[2], rng.uniform(0.08, 0.14))
    brightness = rng.uniform(0.5, 1.0)
    base = _CALLOSITY_TINTS[rng.integers(len(_CALLOSITY_TINTS))]
    colour = tuple(c * brightness for c in base[:3]) + (base[3],)
    foam = _foam_blobs(rng, obj.kind, profile_u, profile_w, tail_u)
    return WhaleLook(
        profile_u=profile_u,
        profile_w=profile_w,
        tail_u=tail_u,
        half_span=rng.uniform(0.72, 0.9),
        bend=rng.uniform(-0.02, 0.02),
        skin=skin,
        sheen=rng.uniform(0.2, 0.9),
        vis_tail=rng.uniform(0.8, 1.0) if obj.kind == "flukes" else rng.uniform(0.25, 1.0),
        vis_flipper=rng.uniform(0.3, 1.0),
        vis_head=rng.uniform(0.8, 1.0),
        flipper_angle=np.deg2rad(rng.uniform(25, 55)),
        callosities=_callosity_layout(rng),
        callosity_colour=colour,
        lip_line=rng.uniform(0.3, 0.8),
        foam=foam,
        cut_u=rng.uniform(-1.6, -0.7),
        ghost=rng.uniform(0.0, 0.3),
        fade_u=tail_u + rng.uniform(0.3, 1.0),
    )


def _half_width(u: np.ndarray) -> np.ndarray:
    return np.interp(u, _HEAD_U[::-1], _HEAD_W[::-1])


def _callosity_layout(rng: np.random.Generator) -> np.ndarray:
    """Callosity blobs (u, v, radius_u, radius_v), units of L, all within the head."""
    blobs = []
    # bonnet: the big patch on the rostrum tip, often in two or three pieces
    bu, bv = 0.36 + rng.normal(0, 0.02), rng.normal(0, 0.012)
    blobs.append((bu, bv, rng.uniform(0.1, 0.14), rng.uniform(0.065, 0.09)))
    for _ in range(rng.integers(0, 3)):
        blobs.append(
            (
                bu + rng.uniform(-0.1, 0.06),
                bv + rng.normal(0, 0.03),
                rng.uniform(0.04, 0.06),
                rng.uniform(0.035, 0.05),
            )
        )
    # rostral islands along the midline
    for _ in range(rng.integers(1, 5)):
        blobs.append(
            (
                rng.uniform(-0.08, 0.24),
                rng.normal(0, 0.02),
                rng.uniform(0.04, 0.07),
                rng.uniform(0.035, 0.05),
            )
        )
    # behind the blowholes (coaming), a pair or one merged patch
    if rng.random() < 0.8:
        for side in (-1, 1):
            blobs.append(
                (
                    -0.41 + rng.normal(0, 0.015),
                    side * rng.uniform(0.05, 0.09),
                    rng.uniform(0.04, 0.06),
                    rng.uniform(0.04, 0.055),
                )
            )
    for side in (-1, 1):
        # lip callosities: a broken row along each lower lip
        for u in np.sort(rng.uniform(-0.35, 0.3, size=rng.integers(3, 7))):
            w = float(_half_width(u))
            blobs.append(
                (
                    u,
                    side * (w - rng.uniform(0.04, 0.07)),
                    rng.uniform(0.04, 0.065),
                    rng.uniform(0.03, 0.045),
                )
            )
        if rng.random() < 0.7:  # above the eye
            u = -0.31 + rng.normal(0, 0.02)
            blobs.append((u, side * (float(_half_width(u)) - 0.06), 0.045, 0.04))
    return np.array(blobs, dtype=np.float64)


def _foam_blobs(rng, kind, profile_u, profile_w, tail_u) -> np.ndarray:
    """White water around a surfacing whale or a diving tail (u, v, ru, rv, strength)."""
    blobs = []
    if kind == "flukes" and rng.random() < 0.7:
        for _ in range(rng.integers(3, 8)):
            blobs.append(
                (
                    tail_u - rng.uniform(-0.3, 0.6),
                    rng.uniform(-1.0, 1.0),
                    rng.uniform(0.15, 0.4),
                    rng.uniform(0.1, 0.3),
                    rng.uniform(0.6, 1.2),
                )
            )
    elif kind != "flukes" and rng.random() < 0.35:
        for _ in range(rng.integers(2, 6)):
            u = rng.uniform(tail_u, -0.6)
            w = float(np.interp(u, profile_u, profile_w))
            blobs.append(
                (
                    u,
                    rng.choice((-1, 1)) * (w + rng.uniform(0.0, 0.35)),
                    rng.uniform(0.2, 0.5),
                    rng.uniform(0.08, 0.2),
                    rng.uniform(0.5, 1.0),
                )
            )
        if rng.random() < 0.4:  # a wash of foam over the side of the head
            u = rng.uniform(-0.3, 0.4)
            side = rng.choice((-1, 1))
            blobs.append(
                (
                    u,
                    side * float(_half_width(u)) * rng.uniform(0.9, 1.4),
                    rng.uniform(0.1, 0.2),
                    rng.uniform(0.06, 0.12),
                    rng.uniform(0.5, 0.9),
                )
            )
    return np.array(blobs, dtype=np.float64).reshape(-1, 5)


def _unit(heading_deg: float) -> tuple[float, float]:
    h = np.deg2rad(heading_deg)
    return float(np.sin(h)), float(-np.cos(h))


def head_centre(obj: SceneObject) -> tuple[float, float]:
    """Global pixel coordinates of the head centre (the anchor, except for ``flukes``)."""
    if obj.kind != "flukes":
        return obj.cx, obj.cy
    look = whale_look(obj)
    fx, fy = _unit(obj.heading_deg)
    back = (look.tail_u - 0.3) * FACE_SIZE_PX * obj.scale  # anchor = middle of the flukes
    return obj.cx - fx * back, obj.cy - fy * back


def whale_capsule(obj: SceneObject) -> tuple[tuple[float, float], tuple[float, float], float]:
    """The drawn extent as a capsule: segment end points (global px) and radius (px)."""
    look = whale_look(obj)
    size = FACE_SIZE_PX * obj.scale
    hx, hy = head_centre(obj)
    fx, fy = _unit(obj.heading_deg)
    rear, front = look.extent_u
    if obj.kind == "flukes":
        front = look.fade_u + 0.2
    radius = max(look.half_span, 0.62 * 1.15, 0.95) + abs(look.bend) * (rear + 0.5) ** 2
    if len(look.foam):
        radius += 0.6
    p0 = (hx + fx * front * size, hy + fy * front * size)
    p1 = (hx + fx * rear * size, hy + fy * rear * size)
    return p0, p1, radius * size + 2.0


def _capsule_box(capsule) -> Box:
    (x0, y0), (x1, y1), r = capsule
    return min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r


def face_box(obj: SceneObject) -> Box:
    """Axis-aligned box of the head ("face") of ``obj`` (kind ``whale``), global px.

    Box format ``(xmin, ymin, xmax, ymax)``, corner-anchored pixel coordinates with an
    exclusive max, float. It bounds the head ellipse — long axis ``FACE_SIZE_PX * scale``
    (rostrum tip to blowholes) along the heading, short axis the head's widest breadth — so
    the box centre is exactly the head centre ``(obj.cx, obj.cy)`` at any heading.
    """
    if obj.kind != "whale":
        raise ValueError(f"kind={obj.kind!r}: only a 'whale' shows a face")
    size = FACE_SIZE_PX * obj.scale
    fx, fy = _unit(obj.heading_deg)
    a, b = 0.5 * size, float(_HEAD_W.max()) * size  # semi-axes along and across
    half_x = float(np.hypot(a * fx, b * fy))
    half_y = float(np.hypot(a * fy, b * fx))
    return obj.cx - half_x, obj.cy - half_y, obj.cx + half_x, obj.cy + half_y


def draw_whale(canvas: np.ndarray, col_off: int, row_off: int, obj: SceneObject) -> None:
    """Draw ``obj`` (kind whale, body or flukes) into ``canvas`` (C, h, w) at global offset."""
    capsule = whale_capsule(obj)
    frame = open_frame(canvas, col_off, row_off, _capsule_box(capsule))
    if frame is None:
        return
    look = whale_look(obj)
    size = np.float32(FACE_SIZE_PX * obj.scale)
    hx, hy = head_centre(obj)
    u, v = frame.local(hx, hy, obj.heading_deg)
    u /= size
    v /= size
    behind = np.minimum(u + np.float32(0.5), np.float32(0.0))
    v -= np.float32(look.bend) * behind * behind  # a gently curved body

    half = np.interp(u, look.profile_u, look.profile_w, left=-1.0, right=-1.0).astype(np.float32)
    absv = np.abs(v)
    body = edge((half - absv) * size)
    body *= np.interp(
        u, [look.tail_u, -2.2, -0.5], [look.vis_tail, 0.85 + 0.15 * look.vis_tail, 1.0]
    ).astype(np.float32)
    alpha = np.maximum(body, _flippers(u, v, look, size))
    alpha = np.maximum(alpha, _flukes(u, v, look, size))
    if obj.kind == "body":
        # the head slopes away under water: a soft, ragged waterline
        ragged = point_noise(u * 5, v * 5, derive_seed(obj.seed, 0xC07)) - np.float32(0.5)
        cut = edge((np.float32(look.cut_u) - u) * size + np.float32(6.0) * ragged, 6.0)
        alpha *= cut + np.float32(look.ghost) * (np.float32(1.0) - cut)
    elif obj.kind == "flukes":
        alpha *= edge((np.float32(look.fade_u) - u) * size, 8.0)

    # wet black skin: a sunlit ridge along the back and a faint mottle
    ridge = np.clip(1.0 - (v / np.maximum(half * np.float32(0.75), np.float32(0.05))) ** 2, 0, 1)
    shade = np.float32(1.0) + np.float32(look.sheen) * ridge
    shade *= np.float32(0.85) + np.float32(0.3) * point_noise(u * 6, v * 6, obj.seed)
    blend(frame.view, [np.float32(c) * shade for c in look.skin], alpha)

    if obj.kind == "whale":
        _draw_head(canvas, col_off, row_off, obj, look)
    if len(look.foam):
        _draw_foam(frame.view, u, v, look.foam, size, obj.seed)


def _flippers(u, v, look: WhaleLook, size) -> np.ndarray:
    root_u = -0.85
    root_w = float(np.interp(root_u, look.profile_u, look.profile_w)) * 0.85
    du, dv = -np.sin(look.flipper_angle), np.cos(look.flipper_angle)
    out = np.zeros(u.shape, np.float32)
    for side in (-1.0, 1.0):
        pu, pv = u - np.float32(root_u), v - np.float32(side * root_w)
        along = pu * np.float32(du) + pv * np.float32(side * dv) - np.float32(0.3)
        across = pu * np.float32(side * dv) - pv * np.float32(du)
        r = np.sqrt((along / np.float32(0.33)) ** 2 + (across / np.float32(0.13)) ** 2)
        out = np.maximum(out, edge((np.float32(1.0) - r) * np.float32(0.13) * size))
    return out * np.float32(look.vis_flipper)


def _flukes(u, v, look: WhaleLook, size) -> np.ndarray:
    """A crescent: swept-back leading edge, concave trailing edge, notch, pointed tips."""
    t = np.float32(look.tail_u) - u + np.float32(0.03)  # distance behind the tail stock
    s = np.abs(v) / np.float32(look.half_span)
    lead = t - (np.float32(0.02) + np.float32(0.40) * s * s)
    trail = (
        np.float32(0.30)
        + np.float32(0.12) * s
        - np.float32(0.14) * np.exp(-((s / np.float32(0.1)) ** 2))
    ) - t
    tip = (np.float32(1.0) - s) * np.float32(look.half_span)
    d = np.minimum(np.minimum(lead, trail), tip)
    return edge(d * size) * np.float32(look.vis_tail)


def _draw_head(canvas, col_off, row_off, obj: SceneObject, look: WhaleLook) -> None:
    xmin, ymin, xmax, ymax = face_box(obj)
    frame = open_frame(canvas, col_off, row_off, (xmin - 2, ymin - 2, xmax + 2, ymax + 2))
    if frame is None:
        return
    size = np.float32(FACE_SIZE_PX * obj.scale)
    u, v = frame.local(obj.cx, obj.cy, obj.heading_deg)
    u /= size
    v /= size
    absv = np.abs(v)
    in_head = edge((u + np.float32(0.5)) * size, 2.0) * np.float32(look.vis_head)
    half = np.interp(u, _HEAD_U[::-1], _HEAD_W[::-1], left=-1, right=-1).astype(np.float32)
    inside = edge((half - absv) * size) * in_head

    # the rostrum edge: a darker line between the rostrum and the bowed lower lips
    lip = np.interp(u, _LIP_U[::-1], _LIP_W[::-1], left=-1, right=-1).astype(np.float32)
    line = np.clip(np.float32(1.0) - np.abs(absv - lip) * size / np.float32(0.9), 0, 1)
    line *= inside * np.float32(look.lip_line) * edge((np.float32(0.47) - u) * size)
    blend(frame.view, [np.float32(c * 0.35) for c in look.skin], line)

    # callosities: metaballs with a noisy threshold make irregular, lumpy patches
    field = _metaballs(u, v, look.callosities)
    seed = derive_seed(obj.seed, 0xCA11)
    rough = point_noise(u * 14, v * 14, seed) - np.float32(0.5)
    rough += np.float32(0.5) * (point_noise(u * 30, v * 30, seed + 1) - np.float32(0.5))
    patch = np.clip((field + np.float32(0.55) * rough - np.float32(0.5)) * np.float32(5.0), 0, 1)
    patch *= inside
    mottle = np.float32(0.8) + np.float32(0.35) * point_noise(u * 40, v * 40, seed + 2)
    blend(frame.view, [np.float32(c) * mottle for c in look.callosity_colour], patch)

    # blowholes: two dark slits at the back of the head
    holes = np.zeros(u.shape, np.float32)
    for side in (-1.0, 1.0):
        du = (u + np.float32(0.44)) / np.float32(0.035)
        dv = (v - np.float32(side * 0.04)) / np.float32(0.017)
        holes = np.maximum(holes, edge((np.float32(1.0) - np.sqrt(du * du + dv * dv)) * 1.5))
    blend(frame.view, [np.float32(c * 0.3) for c in look.skin], holes * in_head)


def _draw_foam(view, u, v, blobs: np.ndarray, size, seed: int) -> None:
    field = _metaballs(u, v, blobs[:, :4], blobs[:, 4])
    if not field.any():
        return
    texture = point_noise(u * size / 2.5, v * size / 2.5, derive_seed(seed, 0xF0A))
    texture += np.float32(0.5) * point_noise(u * size / 7, v * size / 7, derive_seed(seed, 0xF0B))
    alpha = np.clip((field * texture - np.float32(0.35)) * np.float32(2.5), 0, 0.95)
    blend(view, _FOAM, alpha)


def _metaballs(u, v, blobs: np.ndarray, strength: np.ndarray | None = None) -> np.ndarray:
    """Sum of elliptical Gaussians ``(u, v, radius_u, radius_v)`` at each pixel: float32 (h, w).

    Summed blob by blob in a fixed order, so a pixel's value never depends on its window.
    """
    b = blobs.astype(np.float32)
    du = (u[None] - b[:, 0, None, None]) / b[:, 2, None, None]
    dv = (v[None] - b[:, 1, None, None]) / b[:, 3, None, None]
    du *= du
    dv *= dv
    du += dv
    np.negative(du, out=du)
    terms = np.exp(du, out=du)
    if strength is not None:
        terms *= strength.astype(np.float32)[:, None, None]
    field = terms[0].copy()
    for term in terms[1:]:
        field += term
    return field
