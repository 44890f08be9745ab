"""One region's heatmap → the boxes it owns: valid cells, decoding, NMS and core ownership.

The pure middle of detection, shared by every run mode and benchmark: a backend scores the
region's read window into a heatmap on the stride grid (see ``tiling.heatmap``), a *decoder*
turns that heatmap into candidate boxes in scene pixels, and ``region_boxes`` keeps the
candidates that survive NMS and whose centre lies in the region's core. Decoders are plain
functions ``(heat, grid, params) -> (boxes, scores)``: ``heatmap_peaks`` (a classifier's
probability map: local maxima, boxes of the trained object size) is the default; another
decoder (e.g. a centre heatmap with offset and size channels) plugs in beside it and shares the
valid-cell mask, NMS and ownership. ``plan_scene_regions`` sizes the halo for these parameters,
which is what makes a tiled run equal an untiled one (``tests/test_region_boxes.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tiling.grid import Region, in_window, plan_regions, required_halo
from tiling.heatmap import CellGrid, check_decode_fields, heatmap_to_boxes
from tiling.nms import nms

__all__ = [
    "DecodeParams",
    "Decoder",
    "cell_valid",
    "heatmap_peaks",
    "own",
    "peak_radius",
    "plan_scene_regions",
    "region_boxes",
]


def peak_radius(box_size: float, stride: int) -> int:
    """Peaks closer than half a box are one object: radius in cells, at least 1."""
    return max(1, round(box_size / (2 * stride)))


@dataclass(frozen=True)
class DecodeParams:
    """How a heatmap becomes boxes.

    ``stride``: heatmap cell spacing (px); ``window``: the side (px) of the window each cell
    scores; ``box_size``: side (px) of an output box; ``threshold``: minimum score (0..1);
    ``nms_iou``: IoU above which the lower-scored of two boxes is dropped. ``radius`` (cells,
    the peak neighbourhood) is derived from ``box_size`` and ``stride``.
    """

    stride: int
    window: int
    box_size: float
    threshold: float = 0.5
    nms_iou: float = 0.3
    radius: int = field(init=False)

    def __post_init__(self) -> None:
        check_decode_fields(self)
        if not self.box_size > 0:
            raise ValueError(f"box_size={self.box_size!r}: expected a positive size in pixels")
        object.__setattr__(self, "radius", peak_radius(self.box_size, self.stride))

    @property
    def halo(self) -> int:
        """The read halo (px, stride-aligned) that makes tiling invisible for these parameters."""
        return required_halo(self.window, self.stride, self.box_size, self.radius)


Decoder = Callable[[np.ndarray, CellGrid, DecodeParams], tuple[np.ndarray, np.ndarray]]


def heatmap_peaks(
    heat: np.ndarray, grid: CellGrid, params: DecodeParams
) -> tuple[np.ndarray, np.ndarray]:
    """The default decoder: peaks of a probability map (rows, cols) → ``box_size`` squares.

    Returns (boxes (N, 4) float64 [xmin, ymin, xmax, ymax] scene px, scores (N,) float32).
    """
    return heatmap_to_boxes(heat, grid, params.threshold, params.box_size, params.radius)


def cell_valid(valid: np.ndarray, shape: tuple[int, ...], stride: int, window: int) -> np.ndarray:
    """(rows, cols) bool: a cell counts only if the pixel at its window centre is valid.

    ``valid`` is the read window's (height, width) mask (inside the scene and not nodata);
    ``shape`` the heatmap's, of which the last two axes are (rows, cols).
    """
    half = window // 2
    rows = np.arange(shape[-2]) * stride + half
    cols = np.arange(shape[-1]) * stride + half
    return valid[np.ix_(rows, cols)]


def own(
    boxes: np.ndarray, scores: np.ndarray, region: Region, nms_iou: float
) -> tuple[np.ndarray, np.ndarray]:
    """NMS over a region's candidates, then those whose centre lies in the region's core.

    Every point of a scene lies in exactly one core, so each object is reported by one region.
    """
    keep = nms(boxes, scores, nms_iou)
    boxes, scores = boxes[keep], scores[keep]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    mine = in_window(region.core, cx, cy)
    return boxes[mine], scores[mine]


def region_boxes(
    heat: np.ndarray,
    valid: np.ndarray,
    region: Region,
    params: DecodeParams,
    decode: Decoder = heatmap_peaks,
) -> tuple[np.ndarray, np.ndarray]:
    """The boxes ``region`` owns, from the heatmap of its read window.

    ``heat``: (..., rows, cols) float scores on the stride grid whose cell (0, 0) scores the
    window at the read window's top-left pixel; ``valid``: (height, width) bool of the read
    window. Cells whose centre pixel is not valid score 0. Returns (boxes (N, 4) float64
    [xmin, ymin, xmax, ymax] scene px, exclusive max; scores (N,) float32), in raster order of
    their peaks.
    """
    read = region.read
    grid = CellGrid(int(read.col_off), int(read.row_off), params.stride, params.window)
    heat = np.where(cell_valid(valid, heat.shape, params.stride, params.window), heat, 0.0)
    boxes, scores = decode(heat, grid, params)
    return own(boxes, scores, region, params.nms_iou)


def plan_scene_regions(
    width: int, height: int, region_size: int, params: DecodeParams
) -> list[Region]:
    """A ``width``×``height`` px scene's regions: cores of ``region_size`` px with ``params.halo``."""
    return plan_regions(width, height, region_size, params.halo, params.stride)
