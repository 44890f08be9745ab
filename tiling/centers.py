"""Box-detector outputs → boxes: centre peaks plus each peak's sub-cell offset and box size.

The detector (approach 3) emits float32 (5, rows, cols) per image: ``[p, dx, dy, w, h]`` —
face-centre probability, the centre's offset in pixels from the cell's anchor, and the box width
and height in pixels. Cell anchors sit on the :class:`tiling.heatmap.CellGrid` of the read
window (``window`` = the detector's receptive field). Decoding is local (CenterNet): a peak is
a 3×3 maximum of ``p``, so a region can own it by its centre without cross-tile clustering.
Offsets are clipped to ±``stride`` and sizes to ``max_box_px``, which is what bounds the halo
(:func:`centres_halo`). Pure numpy: no torch here.
"""

from __future__ import annotations

import numpy as np

from tiling.grid import required_halo
from tiling.heatmap import CellGrid, find_peaks

PEAK_RADIUS = 1  # 3×3 maxima, as CenterNet decodes


def decode_centres(
    out: np.ndarray, grid: CellGrid, threshold: float, max_box_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """(5, rows, cols) detector output → (boxes (N, 4) float64 [xmin, ymin, xmax, ymax] scene px,
    scores (N,) float32), one box per peak of channel 0 at or above ``threshold``, raster order."""
    if out.ndim != 3 or out.shape[0] != 5:
        raise ValueError(f"detector output shape {out.shape}, expected (5, rows, cols)")
    heat = out[0]
    rows, cols = find_peaks(heat, threshold, PEAK_RADIUS)
    scores = heat[rows, cols].astype(np.float32)
    s = grid.stride
    ax, ay = grid.centres(rows, cols)
    cx = ax + np.clip(out[1, rows, cols].astype(np.float64), -s, s)
    cy = ay + np.clip(out[2, rows, cols].astype(np.float64), -s, s)
    w = np.clip(out[3, rows, cols].astype(np.float64), 1.0, max_box_px) / 2
    h = np.clip(out[4, rows, cols].astype(np.float64), 1.0, max_box_px) / 2
    boxes = np.stack([cx - w, cy - h, cx + w, cy + h], axis=1).reshape(-1, 4)
    return boxes, scores


def centres_halo(receptive_field: int, stride: int, max_box_px: float) -> int:
    """Halo (px, stride-aligned) that keeps decoded, NMS'd, core-owned boxes tiling-invariant.

    As :func:`tiling.grid.required_halo` for a window of ``receptive_field`` px, with boxes up to
    ``max_box_px`` whose centres may sit ``stride`` px off their anchors (both boxes of a pair).
    """
    return required_halo(receptive_field, stride, max_box_px + 2 * stride, PEAK_RADIUS)


def owned_centre_boxes(
    out: np.ndarray, grid: CellGrid, core, cell_valid: np.ndarray | None, threshold: float,
    max_box_px: float, nms_iou: float,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Decode one read window's (5, rows, cols) output, NMS the boxes, keep those whose centre
    lies in ``core`` (a ``rasterio.windows.Window``). ``cell_valid``: bool (rows, cols), cells
    whose anchor pixel is inside the scene and not nodata (others cannot peak)."""
    from tiling.grid import in_window
    from tiling.nms import nms

    if cell_valid is not None:
        out = out.copy()
        out[0] = np.where(cell_valid, out[0], 0.0)
    boxes, scores = decode_centres(out, grid, threshold, max_box_px)
    keep = nms(boxes, scores, nms_iou)
    boxes, scores = boxes[keep], scores[keep]
    own = in_window(core, (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2)
    return boxes[own], scores[own]


def anchor_valid(valid: np.ndarray, shape: tuple[int, int], stride: int, window: int) -> np.ndarray:
    """bool (rows, cols): whether each cell's anchor pixel (window centre) is valid."""
    half = window // 2
    return valid[np.ix_(np.arange(shape[0]) * stride + half, np.arange(shape[1]) * stride + half)]
