"""Canvas windows and compositing: objects draw at global pixel coordinates into any window.

A canvas is a float32 band-planar array ``(C, height, width)`` (C = 3 for R, G, B or 4 with
NIR) whose pixel ``[:, 0, 0]`` is the global pixel ``(col_off, row_off)``. Pixel ``(col, row)``
covers ``[col, col + 1) x [row, row + 1)``; objects are evaluated at pixel centres
``(col + 0.5, row + 0.5)``. Every value drawn is a function of the global pixel alone, so an
object that straddles two blocks is drawn identically in each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Frame", "blend", "edge", "open_frame"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Frame:
    """The part of a canvas an object touches, with its pixel-centre coordinates.

    ``view`` is a writable view ``(C, h, w)`` of the canvas; ``xs`` (w,) and ``ys`` (h,) are the
    global pixel-centre coordinates of its columns and rows (float64).
    """

    view: np.ndarray
    xs: np.ndarray
    ys: np.ndarray

    def local(self, cx: float, cy: float, heading_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """Object-frame coordinates (u forward along heading, v to the right), float32 (h, w).

        Heading is a compass bearing in the image: 0° points up (-row), 90° right (+col).
        """
        h = np.deg2rad(heading_deg)
        fx, fy = np.sin(h), -np.cos(h)
        dx = self.xs - cx
        dy = self.ys - cy
        u = (dx[None, :] * fx + dy[:, None] * fy).astype(np.float32)
        v = (dx[None, :] * -fy + dy[:, None] * fx).astype(np.float32)
        return u, v


def open_frame(canvas: np.ndarray, col_off: int, row_off: int, bbox: Box) -> Frame | None:
    """The canvas window covered by ``bbox`` (xmin, ymin, xmax, ymax; global px), or None."""
    _, height, width = canvas.shape
    c0 = max(int(np.floor(bbox[0])) - col_off, 0)
    r0 = max(int(np.floor(bbox[1])) - row_off, 0)
    c1 = min(int(np.ceil(bbox[2])) - col_off, width)
    r1 = min(int(np.ceil(bbox[3])) - row_off, height)
    if c0 >= c1 or r0 >= r1:
        return None
    xs = np.arange(col_off + c0, col_off + c1, dtype=np.float64) + 0.5
    ys = np.arange(row_off + r0, row_off + r1, dtype=np.float64) + 0.5
    return Frame(view=canvas[:, r0:r1, c0:c1], xs=xs, ys=ys)


def edge(distance: np.ndarray, width: float = 1.0) -> np.ndarray:
    """Antialiased coverage from a signed distance (px, positive inside): float32 in [0, 1]."""
    out = distance * np.float32(1.0 / width)
    out += np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def blend(view: np.ndarray, colour, alpha: np.ndarray) -> None:
    """``view = view + (colour - view) * alpha`` per band; colour per band: scalar or (h, w)."""
    for c in range(view.shape[0]):
        band = view[c]
        band += (colour[c] - band) * alpha
