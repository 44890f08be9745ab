"""Regions: the (core, read window) work units a scene is split into, aligned to the heatmap stride.

All windows are ``rasterio.windows.Window`` in scene pixels (col_off, row_off, width, height),
integer-valued. A region *owns* the detections whose centre falls in its core; it *reads* the
core grown by a halo on every side, so every score that can affect an owned detection is
computed from the same pixels it would see in an untiled run. Read windows may extend past the
scene: those pixels are filled (see ``tiling.read``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rasterio.windows import Window


@dataclass(frozen=True)
class Region:
    """One work unit of a scene: ``index`` in raster order, the ``core`` it owns, the ``read`` window."""

    index: int
    core: Window
    read: Window


def required_halo(window: int, stride: int, box_size: float, peak_radius: int) -> int:
    """A stride-aligned halo (pixels) that makes tiling invisible: a sufficient bound, not the least.

    A detection owned by the core depends on the heatmap cells within ``peak_radius + 1`` cells of
    its peak (peak test + centre refinement) and on overlapping detections (within ``box_size``)
    that NMS compares it with, which depend on their own neighbourhoods in turn. Each cell reads
    ``window`` pixels around its centre, so: halo ≥ window/2 + box_size + 2·(peak_radius + 1)·stride.

    The bound covers one step of NMS (a suppressor and its neighbourhood), not chains of boxes
    suppressing boxes that suppress others: at the detector's NMS IoU of 0.3 tiled == untiled
    (``tests/test_region_boxes.py``); at a much lower IoU (≤ 0.1) such chains can reach past
    the halo on dense heatmaps.
    """
    need = window / 2 + box_size + 2 * (peak_radius + 1) * stride
    return int(math.ceil(need / stride)) * stride


def plan_regions(width: int, height: int, core_size: int, halo: int, align: int) -> list[Region]:
    """Tile a ``width``×``height`` scene into cores of ``core_size`` px (the last ones clipped).

    ``core_size`` is rounded down and ``halo`` up to multiples of ``align`` (the heatmap stride),
    so every read window starts on the scene-wide cell grid and tiled scores equal untiled ones.
    """
    if width < 1 or height < 1:
        raise ValueError(f"scene size {width}×{height} px must be positive")
    if align < 1:
        raise ValueError(f"align {align} must be ≥ 1")
    core = max(align, core_size // align * align)
    halo = -(-halo // align) * align
    regions = []
    for row_off in range(0, height, core):
        for col_off in range(0, width, core):
            c = Window(col_off, row_off, min(core, width - col_off), min(core, height - row_off))
            r = Window(col_off - halo, row_off - halo, c.width + 2 * halo, c.height + 2 * halo)
            regions.append(Region(len(regions), c, r))
    return regions


def in_window(window: Window, cols, rows):
    """Boolean mask: points (cols, rows) in continuous pixel coordinates inside ``window`` [off, off+size)."""
    return (
        (cols >= window.col_off)
        & (cols < window.col_off + window.width)
        & (rows >= window.row_off)
        & (rows < window.row_off + window.height)
    )
