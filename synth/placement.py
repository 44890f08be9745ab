"""Where things go in a scene: whales first, then hard negatives that keep clear of the heads.

Rules (all distances in global pixels, ``L = FACE_SIZE_PX``):

* every face box lies fully inside the scene and outside the nodata border;
* whale heads are at least ``3 L`` from each other and from every other object's anchor
  (a calf's head, :mod:`synth.calves`, at least ``1.3 L`` from its mother's and the others);
* nothing but a whale's own foam paints over a head: each head centre keeps
  ``radius + 0.6 L`` from every other object's capsule;
* some whales sit exactly on 512-px block borders or against the scene edge, where tiling bugs
  live.

The result is a plain list: a scene is then drawn block by block from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from synth.calves import place_calf
from synth.draw import face_box, object_capsule
from synth.look import DEFAULT_LOOK, SceneLook
from synth.noise import derive_seed, line_noise
from synth.objects import SceneObject
from synth.units import FACE_SIZE_PX, SIZE_JITTER

__all__ = ["DENSITY_PER_MP", "NodataBorder", "place_objects"]

HEAD_SPACING = 3 * FACE_SIZE_PX
HEAD_CLEARANCE = 0.6 * FACE_SIZE_PX
CALF_SPACING = 1.3 * FACE_SIZE_PX
"""A calf's head keeps this far from every other head (its mother's included)."""
BLOCK_PX = 512
_TRIES = 400

DENSITY_PER_MP = {
    "glint": 0.5,
    "foam": 6.0,
    "debris": 2.0,
    "body": 0.3,
    "flukes": 0.2,
    "boat": 0.08,
}
"""Hard negatives per megapixel (Poisson means), in drawing order before boats and whales."""
_AT_LEAST_ONE = ("foam", "debris", "body", "flukes")


@dataclass(frozen=True)
class NodataBorder:
    """Nodata along the left and top edges of a scene, behind irregular diagonal boundaries.

    Pixel ``(col, row)`` is nodata where ``col < left(row)`` or ``row < top(col)``; both limits
    are pure functions of the global coordinate (a slanted line plus 1-D value noise).
    """

    width: int
    height: int
    seed: int

    def _params(self) -> np.ndarray:
        rng = np.random.default_rng(derive_seed(self.seed, 0x0DA7A))
        return rng.uniform([0.02, 0.02, 0.02, 0.02], [0.06, 0.08, 0.06, 0.08])

    def left(self, rows: np.ndarray) -> np.ndarray:
        """First valid column for each row (float64)."""
        a, b, _, _ = self._params()
        rows = np.asarray(rows, dtype=np.float64)
        wiggle = 0.6 * a * self.width * (line_noise(rows, 256.0, derive_seed(self.seed, 1)) - 0.5)
        wiggle += 6.0 * (line_noise(rows, 16.0, derive_seed(self.seed, 2)) - 0.5)
        return self.width * (a + b * rows / self.height) + wiggle

    def top(self, cols: np.ndarray) -> np.ndarray:
        """First valid row for each column (float64)."""
        _, _, c, d = self._params()
        cols = np.asarray(cols, dtype=np.float64)
        wiggle = 0.6 * c * self.height * (line_noise(cols, 256.0, derive_seed(self.seed, 3)) - 0.5)
        wiggle += 6.0 * (line_noise(cols, 16.0, derive_seed(self.seed, 4)) - 0.5)
        return self.height * (c + d * (1.0 - cols / self.width)) + wiggle

    def mask(self, col_off: int, row_off: int, width: int, height: int) -> np.ndarray:
        """Boolean (height, width): True where the window's pixel is nodata."""
        cols = np.arange(col_off, col_off + width) + 0.5
        rows = np.arange(row_off, row_off + height) + 0.5
        return (cols[None, :] < self.left(rows)[:, None]) | (
            rows[:, None] < self.top(cols)[None, :]
        )

    def clear_of(self, box, margin: float = 2.0) -> bool:
        """Whether the box ``(xmin, ymin, xmax, ymax)`` lies wholly in valid pixels."""
        xmin, ymin, xmax, ymax = box
        rows = np.linspace(ymin, ymax, 9)
        cols = np.linspace(xmin, xmax, 9)
        return bool(
            xmin >= self.left(rows).max() + margin and ymin >= self.top(cols).max() + margin
        )


def _segment_distance(points: np.ndarray, p0, p1) -> np.ndarray:
    """Distance of each point (N, 2) to the segment p0-p1."""
    a = np.asarray(p0, dtype=np.float64)
    d = np.asarray(p1, dtype=np.float64) - a
    length2 = float(d @ d)
    rel = points - a
    t = np.clip(rel @ d / length2, 0.0, 1.0) if length2 > 0 else np.zeros(len(points))
    return np.hypot(*(rel - t[:, None] * d).T)


class _Heads:
    """Head centres placed so far, for vectorised clearance tests."""

    def __init__(self) -> None:
        self.xy = np.empty((0, 2))

    def add(self, x: float, y: float) -> None:
        self.xy = np.vstack([self.xy, [x, y]])

    def clear_of(self, obj: SceneObject, anchor_gap: float) -> bool:
        if not len(self.xy):
            return True
        if np.hypot(*(self.xy - [obj.cx, obj.cy]).T).min() < anchor_gap:
            return False
        p0, p1, r = object_capsule(obj)
        return bool(_segment_distance(self.xy, p0, p1).min() >= r + HEAD_CLEARANCE)


def _inside(box, width: int, height: int) -> bool:
    return box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height


def place_objects(
    width: int,
    height: int,
    whales: int,
    seed: int,
    nodata: NodataBorder | None = None,
    whale_positions: Sequence[tuple[float, float, float]] | None = None,
    distractors: bool = True,
    look: SceneLook = DEFAULT_LOOK,
) -> list[SceneObject]:
    """All objects of a scene, in drawing order (negatives first, whales last, calves on top).

    ``whale_positions`` — ``(cx, cy, heading_deg)`` head centres in global pixels — replaces
    the random whales (then at nominal scale 1.0); their face boxes must lie in the scene.
    ``look`` sets the whales' size range, calves and the density of hard negatives
    (:data:`~synth.look.DEFAULT_LOOK` places exactly what synth always placed).
    Raises ValueError when the whales cannot be placed under the rules above.
    """
    rng = np.random.default_rng(derive_seed(seed, 0x91ACE))
    heads = _Heads()
    placed_whales: list[SceneObject] = []
    if whale_positions is not None:
        for i, (cx, cy, heading) in enumerate(whale_positions):
            whale = SceneObject(
                "whale",
                float(cx),
                float(cy),
                float(heading) % 360.0,
                1.0,
                derive_seed(seed, 0x3A1E, i),
            )
            box = face_box(whale)
            if not _inside(box, width, height):
                raise ValueError(
                    f"whale_positions[{i}]={(cx, cy, heading)!r}: face box {box} is not inside "
                    f"the {width}x{height} scene"
                )
            placed_whales.append(whale)
            heads.add(whale.cx, whale.cy)
    else:
        for i in range(whales):
            whale = _place_whale(rng, width, height, heads, placed_whales, nodata, look)
            if whale is None:
                raise ValueError(
                    f"whales={whales}: could place only {i} whales {HEAD_SPACING} px apart in "
                    f"a {width}x{height} scene; ask for fewer whales or a larger scene"
                )
            placed_whales.append(whale)
            heads.add(whale.cx, whale.cy)
    placed_whales += _place_calves(seed, placed_whales, width, height, heads, nodata, look)

    negatives: list[SceneObject] = []
    if distractors:
        megapixels = width * height / 1e6
        for kind, density in DENSITY_PER_MP.items():
            count = int(rng.poisson(density * megapixels * look.distractors))
            if kind in _AT_LEAST_ONE and megapixels >= 0.25:
                count = max(count, 1)
            for _ in range(count):
                obj = _place_negative(rng, kind, width, height, heads, nodata)
                if obj is not None:
                    negatives.append(obj)
    boats = [o for o in negatives if o.kind == "boat"]
    return [o for o in negatives if o.kind != "boat"] + boats + placed_whales


def _random_object(
    rng, kind: str, x: float, y: float, scale=(1 - SIZE_JITTER, 1 + SIZE_JITTER)
) -> SceneObject:
    return SceneObject(
        kind,
        float(x),
        float(y),
        float(rng.uniform(0, 360)),
        float(rng.uniform(*scale)),
        int(rng.integers(1 << 31)),
    )


def _place_calves(seed, mothers, width, height, heads: _Heads, nodata, look: SceneLook):
    """Calves beside some of ``mothers`` (see :mod:`synth.calves`); their heads join ``heads``."""
    if look.calves <= 0:
        return []
    rng = np.random.default_rng(derive_seed(seed, 0xCA1F))

    def fits(calf: SceneObject) -> bool:
        box = face_box(calf)
        return (
            _inside(box, width, height)
            and (nodata is None or nodata.clear_of(box))
            and heads.clear_of(calf, CALF_SPACING)
        )

    calves = []
    for mother in mothers:
        if rng.random() < look.calves:
            calf = place_calf(rng, mother, fits)
            if calf is not None:
                calves.append(calf)
                heads.add(calf.cx, calf.cy)
    return calves


def _place_whale(rng, width, height, heads: _Heads, whales, nodata, look) -> SceneObject | None:
    for _ in range(_TRIES):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        snap = rng.random()
        if snap < 0.2 and width > BLOCK_PX:  # head centre on a vertical block border
            x = BLOCK_PX * rng.integers(1, (width - 1) // BLOCK_PX + 1) + rng.uniform(-1.5, 1.5)
        elif snap < 0.4 and height > BLOCK_PX:  # ... on a horizontal one
            y = BLOCK_PX * rng.integers(1, (height - 1) // BLOCK_PX + 1) + rng.uniform(-1.5, 1.5)
        whale = _random_object(rng, "whale", x, y, look.whale_scale)
        box = face_box(whale)
        if snap > 0.9:  # against a scene edge
            edge = rng.integers(4)
            shift = [-box[0], -box[1], width - box[2], height - box[3]][edge] + rng.uniform(
                0, 3
            ) * (1 if edge < 2 else -1)
            dx, dy = (shift, 0.0) if edge in (0, 2) else (0.0, shift)
            whale = SceneObject(
                "whale", whale.cx + dx, whale.cy + dy, whale.heading_deg, whale.scale, whale.seed
            )
            box = face_box(whale)
        if not _inside(box, width, height):
            continue
        if nodata is not None and not nodata.clear_of(box):
            continue
        if not heads.clear_of(whale, HEAD_SPACING):
            continue
        # the newcomer's head must also stay clear of the bodies already placed
        p = np.array([[whale.cx, whale.cy]])
        if any(
            _segment_distance(p, *object_capsule(w)[:2])[0] < object_capsule(w)[2] + HEAD_CLEARANCE
            for w in whales
        ):
            continue
        return whale
    return None


def _place_negative(rng, kind, width, height, heads: _Heads, nodata) -> SceneObject | None:
    for _ in range(20):
        obj = _random_object(rng, kind, rng.uniform(0, width), rng.uniform(0, height))
        if nodata is not None and nodata.mask(int(obj.cx), int(obj.cy), 1, 1)[0, 0]:
            continue
        if heads.clear_of(obj, HEAD_SPACING):
            return obj
    return None
