"""Heatmap → candidate boxes: thresholded, plateau-safe local maxima with sub-cell centres.

A heatmap is a float32 array (rows, cols) of probabilities in 0..1 on a stride-aligned grid:
cell (i, j) scores the ``window``×``window`` pixel window whose top-left pixel is
(row0 + i·stride, col0 + j·stride), so its centre is at +window/2 in both axes. Everything here is
translation invariant on that grid, which is what keeps tiled and untiled runs identical.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CellGrid:
    """Where heatmap cells sit in scene pixels (see module docstring)."""

    col0: int
    row0: int
    stride: int
    window: int

    def centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell indices (may be fractional) → window centres (cols, rows) in scene pixels."""
        half = self.window / 2
        return self.col0 + cols * self.stride + half, self.row0 + rows * self.stride + half


def check_decode_fields(params) -> None:
    """ValueError naming the field unless ``params.stride`` and ``.window`` are integers ≥ 1 (px)
    and ``.threshold`` and ``.nms_iou`` lie in 0..1: the fields every decoder's parameters share
    (``tiling.region_boxes.RegionParams``, ``tiling.centers.CentreParams``)."""
    for name in ("stride", "window"):
        v = getattr(params, name)
        if not (isinstance(v, numbers.Integral) and v >= 1):
            raise ValueError(f"{name}={v!r}: expected an integer ≥ 1 (pixels)")
    for name, what in (("threshold", "a score"), ("nms_iou", "an IoU")):
        v = getattr(params, name)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name}={v!r}: expected {what} in 0..1")


def find_peaks(heat: np.ndarray, threshold: float, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells ≥ ``threshold`` that are the maximum of their (2·radius+1)² neighbourhood.

    On a plateau of equal values the first cell in raster order wins (strict > against the
    neighbours before it, ≥ against those after), so one object gives one peak.
    Returns (rows, cols) int arrays in raster order.
    """
    h, w = heat.shape
    pad = np.pad(heat, radius, constant_values=-np.inf)
    keep = heat >= threshold
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy == 0 and dx == 0:
                continue
            other = pad[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
            before = dy < 0 or (dy == 0 and dx < 0)
            keep &= heat > other if before else heat >= other
    return np.nonzero(keep)


def refine(
    heat: np.ndarray, rows: np.ndarray, cols: np.ndarray, radius: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-cell peak positions: the score-weighted centroid of each peak's (2·radius+1)² cells.

    A calibrated classifier saturates: a face scores exactly 1.0 over a block of cells (3×3 to
    3×5 at stride 8), :func:`find_peaks` keeps the block's first cell in raster order, and only
    a neighbourhood that spans the block brings the centre back to its middle. The 3×3 one
    (``radius=1``) left approach-2 boxes ~4 px up and ~2 px left of the faces (IoU-AP50 0.59 on
    a 4096² scene with 300 faces); ``heatmap_to_boxes`` uses the peak radius + 1 (0.97 there;
    ``bench/README.md``, SAHI section).
    """
    pad = np.pad(heat, radius, constant_values=0.0).astype(np.float64)
    total = np.zeros(len(rows))
    sr = np.zeros(len(rows))
    sc = np.zeros(len(rows))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            v = pad[rows + radius + dy, cols + radius + dx]
            total += v
            sr += v * dy
            sc += v * dx
    total = np.where(total > 0, total, 1.0)
    return rows + sr / total, cols + sc / total


def heatmap_to_boxes(
    heat: np.ndarray, grid: CellGrid, threshold: float, box_size: float, radius: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of ``heat`` → (boxes (N, 4) float64 [xmin, ymin, xmax, ymax] scene px, scores (N,) float32).

    Boxes are ``box_size`` squares centred on the refined peak (:func:`refine` over the cells
    within ``radius + 1`` of the peak); scores are the peak probabilities.
    """
    rows, cols = find_peaks(heat, threshold, radius)
    scores = heat[rows, cols].astype(np.float32)
    # radius + 1: the cells the halo already budgets for (tiling.grid.required_halo)
    fr, fc = refine(heat, rows, cols, radius + 1)
    cx, cy = grid.centres(fr, fc)
    half = box_size / 2
    boxes = np.stack([cx - half, cy - half, cx + half, cy + half], axis=1).reshape(-1, 4)
    return boxes.astype(np.float64), scores
