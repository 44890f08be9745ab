"""Box-detector outputs → boxes: centre peaks plus each peak's sub-cell offset and box size.

The detector (approach 3) emits float32 (5, rows, cols) per image: ``[p, dx, dy, w, h]`` —
face-centre probability, the centre's offset in pixels from the cell's anchor, and the box width
and height in pixels. Cell anchors sit on the :class:`tiling.heatmap.CellGrid` of the read
window (``window`` = the detector's receptive field). Decoding is local (CenterNet): a peak is
a 3×3 maximum of ``p``, so a region can own it by its centre without cross-tile clustering.
Offsets are clipped to ±``stride`` and sizes to ``max_box_px``, which is what bounds the halo
(:func:`centres_halo`). :func:`centre_boxes` is the decoder that plugs into
:func:`tiling.region_boxes.region_boxes` (valid cells, NMS and core ownership shared with the
classifier's heatmaps), with :class:`CentreParams` in place of its ``DecodeParams``.
Pure numpy: no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiling.grid import required_halo
from tiling.heatmap import CellGrid, check_decode_fields, find_peaks

PEAK_RADIUS = 1  # 3×3 maxima, as CenterNet decodes


@dataclass(frozen=True)
class CentreParams:
    """How a box detector's output becomes boxes (the detector's ``DecodeParams``).

    ``stride``: cell spacing (px); ``window``: the receptive field (px), whose centre is each
    cell's anchor; ``max_box_px``: the largest box side decoded; ``threshold``: minimum centre
    probability; ``nms_iou``: IoU above which the lower-scored of two boxes is dropped.
    """

    stride: int  # px
    window: int  # px
    max_box_px: float
    threshold: float = 0.3
    nms_iou: float = 0.3

    def __post_init__(self) -> None:
        check_decode_fields(self)
        if not self.max_box_px > 0:
            raise ValueError(f"max_box_px={self.max_box_px!r}: expected a positive size in pixels")

    @property
    def halo(self) -> int:
        return centres_halo(self.window, self.stride, self.max_box_px)


def centre_boxes(
    out: np.ndarray, grid: CellGrid, params: CentreParams
) -> tuple[np.ndarray, np.ndarray]:
    """The region decoder for box detectors: :func:`decode_centres` with ``params``."""
    return decode_centres(out, grid, params.threshold, params.max_box_px)


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
