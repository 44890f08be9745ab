"""Training targets of the box detector: Gaussian centre heatmap, box per cell, regression weight.

Geometry as in :mod:`models.detector`: for an input crop, output cell (i, j) has its anchor at
pixel (x, y) = (j·stride + rf/2, i·stride + rf/2) of the crop. An object with centre (cx, cy)
peaks at the nearest cell, j₀ = round((cx − rf/2)/stride), where the heatmap target is exactly 1;
around it an elliptical Gaussian with σ = α·(w, h)/(6·stride) cells (TTFNet, α = 0.54), the
maximum over objects. Box regression (TTFNet's GIoU) is supervised at the cells where an object's
Gaussian is ≥ ``REGRESS_MIN`` (the peak and its nearest neighbours), weighted by the Gaussian;
a cell two objects reach takes the one whose Gaussian is higher there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.54
REGRESS_MIN = 0.2
# cells. The focal loss treats a cell as a full negative unless the target heat there is high, and
# at σ = 0.35 the neighbours of a calf's centre (14–28 px faces) got 0.02: the net had to pick
# one cell for a centre that falls between two, and calves scored 0.3–0.5 on unseen scenes.
# At 0.6 the neighbours get 0.25, as an adult's do (σ ≈ 0.65); calves scored 0.45–0.7
# (docs/approach3.md).
MIN_SIGMA = 0.6


@dataclass(frozen=True)
class Targets:
    """Per-crop targets on the (rows, cols) output grid.

    ``heat``: float32 (rows, cols) in 0..1, exactly 1 at object centres. ``boxes``: float32
    (4, rows, cols) [xmin, ymin, xmax, ymax] crop px of the object each cell regresses.
    ``weight``: float32 (rows, cols), 0 where no box is regressed.
    """

    heat: np.ndarray
    boxes: np.ndarray
    weight: np.ndarray


def cell_anchors(n: int, receptive_field: int, stride: int) -> np.ndarray:
    """Anchor coordinates (px) of ``n`` cells along one axis of a crop."""
    return np.arange(n) * stride + receptive_field / 2


def encode_targets(
    boxes: np.ndarray, rows: int, cols: int, receptive_field: int, stride: int
) -> Targets:
    """(N, 4) float [xmin, ymin, xmax, ymax] crop px → :class:`Targets` on a rows×cols grid.

    Objects anywhere (even with centres off the grid) contribute their Gaussian tails.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    heat = np.zeros((rows, cols), np.float32)
    best = np.zeros((rows, cols), np.float32)  # the Gaussian value of each cell's regressed object
    target = np.zeros((4, rows, cols), np.float32)
    half = receptive_field / 2
    jj, ii = np.arange(cols), np.arange(rows)
    for x0, y0, x1, y1 in boxes:
        w, h = x1 - x0, y1 - y0
        if w <= 0 or h <= 0:
            continue
        j0 = np.floor(((x0 + x1) / 2 - half) / stride + 0.5)
        i0 = np.floor(((y0 + y1) / 2 - half) / stride + 0.5)
        sx = max(ALPHA * w / (6 * stride), MIN_SIGMA)
        sy = max(ALPHA * h / (6 * stride), MIN_SIGMA)
        g = np.exp(-((jj[None] - j0) ** 2) / (2 * sx**2) - (ii[:, None] - i0) ** 2 / (2 * sy**2))
        g = g.astype(np.float32)
        np.maximum(heat, g, out=heat)
        take = (g >= REGRESS_MIN) & (g > best)
        best[take] = g[take]
        target[:, take] = np.array([x0, y0, x1, y1], np.float32)[:, None]
    return Targets(heat, target, np.where(best >= REGRESS_MIN, best, 0).astype(np.float32))
